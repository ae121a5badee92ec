"""The hand-off to workload owners: per owner, what to change so each workload uses its new role.

For every user the plan replaces with a role (``replace-with-role``), the owner (the user's
``owner`` tag, else the spec's ``[[workloads]]`` entry) gets one Markdown file: the role ARN
(from the plan's ``create-workload-role`` action), what to change for the runtime (a GitHub
Actions workflow snippet, the Lambda/ECS/EC2/CodeBuild change, the vendor's role and
ExternalId, Roles Anywhere on premises), where the key is written down (the key scan's current
findings) to remove, and when iamc disables the user. One CSV row per workload for mail merge.
Pure rendering and file writing; key ids only masked, no secret ever. Nothing is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from domain import csv_export
from domain.keys import mask_key_id, mask_key_ids_in
from domain.plan import Outcome, Plan
from domain.records import User
from domain.workloads import CREATE_INSTANCE_PROFILE, CREATE_WORKLOAD_ROLE

UNOWNED = "unowned (tag the user with owner=...)"
CSV_COLUMNS = [
    "owner",
    "account_id",
    "user",
    "runtime",
    "role_arn",
    "repository",
    "keys",
    "written_down",
    "switch_by",
    "key_quiet_on",
    "markdown_file",
]


@dataclass(frozen=True)
class HandoffContext:
    """What every hand-off of one run shares."""

    migration: str
    disable_on: date  # the notice period's end: nothing is disabled before it
    inactive_days: int
    region: str
    spec_path: str = "SPEC"


@dataclass
class WorkloadHandoff:
    """One workload user and what its owner changes.

    Attributes:
        keys: The user's access keys, masked, with their last use (``AKIA…WXYZ, last used
            2026-12-03``).
        written_down: Where the key scan found its keys now (masked), one line each.
        last_used: The newest use of any key the inventory saw (None: never used).
    """

    account_id: str
    user: str
    owner: str
    runtime: str
    role_arn: str
    role_name: str
    repository: str | None = None
    vendor_account: str | None = None
    external_id: str | None = None
    instance_profile: str | None = None
    keys: list[str] = field(default_factory=list)
    written_down: list[str] = field(default_factory=list)
    last_used: datetime | None = None


def owner_of(tags: dict[str, str], declared: str | None) -> str:
    """The user's ``owner`` tag (any casing of the key), else the spec's owner, else unowned."""
    for key, value in tags.items():
        if key.lower() == "owner" and value.strip():
            return value.strip()
    return declared.strip() if declared and declared.strip() else UNOWNED


def _written_down(finding: Any) -> str:
    where = f"{finding.location}:{finding.line}" if finding.line else str(finding.location)
    pair = "; the secret key is written there too" if finding.pair_found else ""
    return mask_key_ids_in(f"{finding.source}: {where} (key {finding.masked_key}{pair})")


def handoffs_from_plan(
    plan: Plan,
    records: dict[tuple[str, str], User],
    declared_owners: dict[tuple[str, str], str],
    findings: list[Any],
) -> list[WorkloadHandoff]:
    """One hand-off per workload user the plan replaces with a role, sorted by owner and user.

    Args:
        plan: The plan (its ``create-workload-role`` actions name each role).
        records: ``(account, user)`` -> the user as the plan's inventory saw it (tags, keys).
        declared_owners: ``(account, user)`` -> the owner the spec's ``[[workloads]]`` names.
        findings: The key scan's current findings (``domain.key_attribution.KeyFinding``).
    """
    roles = {(a.account_id, a.target): a for a in plan.actions if a.kind == CREATE_WORKLOAD_ROLE}
    profiles = {
        (a.account_id, a.target): a for a in plan.actions if a.kind == CREATE_INSTANCE_PROFILE
    }
    found: list[WorkloadHandoff] = []
    for user_plan in plan.users:
        if user_plan.outcome != Outcome.REPLACE_WITH_ROLE:
            continue
        key = (user_plan.account_id, user_plan.user)
        role = roles.get(key)
        if role is None:
            continue  # the replace stage planned no role (a blocked placement): nothing to use
        params = role.params
        role_name = str(params.get("role_name"))
        path = str(params.get("role_path") or "/")
        record = records.get(key)
        profile = profiles.get(key)
        keys = record.access_keys if record else []
        dates = [k.last_used_date for k in keys if k.last_used_date]
        found.append(
            WorkloadHandoff(
                account_id=user_plan.account_id,
                user=user_plan.user,
                owner=owner_of(record.tags if record else {}, declared_owners.get(key)),
                runtime=str(params.get("runtime") or "unknown"),
                role_arn=f"arn:aws:iam::{user_plan.account_id}:role{path}{role_name}",
                role_name=role_name,
                repository=params.get("repository"),
                vendor_account=params.get("vendor_account"),
                external_id=params.get("external_id"),
                instance_profile=(
                    str(
                        profile.params.get("instance_profile_name")
                        or profile.params.get("name")
                        or role_name
                    )
                    if profile
                    else None
                ),
                keys=[
                    f"{mask_key_id(k.key_id)} ({k.status}), last used "
                    + (k.last_used_date.date().isoformat() if k.last_used_date else "never")
                    for k in keys
                ],
                written_down=sorted(
                    {
                        _written_down(f)
                        for f in findings
                        if f.owner_account_id == user_plan.account_id
                        and f.owner_user == user_plan.user
                        and f.current
                    }
                ),
                last_used=max(dates, default=None),
            )
        )
    return sorted(found, key=lambda h: (h.owner, h.account_id, h.user))


# -- what to change, per runtime -----------------------------------------------------------------

_REMOVE_ENV = (
    "remove the `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` environment variables (and any "
    "`AWS_PROFILE` pointing at a profile with the key)"
)


def _github(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    repo = h.repository or "OWNER/REPO"
    return [
        f"In `{repo}`, give the workflow an OIDC token and assume the role instead of the key:",
        "",
        "```yaml",
        "permissions:",
        "  id-token: write",
        "  contents: read",
        "",
        "steps:",
        "  - uses: aws-actions/configure-aws-credentials@v4",
        "    with:",
        f"      role-to-assume: {h.role_arn}",
        f"      aws-region: {ctx.region}",
        "```",
        "",
        "Remove the `aws-access-key-id` / `aws-secret-access-key` inputs, then delete the "
        "repository (and environment/organization) secrets `AWS_ACCESS_KEY_ID` and "
        "`AWS_SECRET_ACCESS_KEY`. The role trusts only this repository's workflows "
        f"(`token.actions.githubusercontent.com:sub` = `repo:{repo}:…`).",
    ]


def _lambda(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    return [
        "Make the role the function's execution role:",
        "",
        "```sh",
        f"aws lambda update-function-configuration --function-name FUNCTION --role {h.role_arn}",
        "```",
        "",
        f"Then {_REMOVE_ENV} from the function's configuration; the SDK picks the role up.",
    ]


def _ecs(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    return [
        "Set the role as the task role in the task definition and deploy a new revision:",
        "",
        "```json",
        f'"taskRoleArn": "{h.role_arn}"',
        "```",
        "",
        f"Then {_REMOVE_ENV} from the container definitions (and any secret holding the key).",
    ]


def _ec2(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    profile = h.instance_profile or h.role_name
    return [
        f"Associate the instance profile `{profile}` (role `{h.role_arn}`) with the instance:",
        "",
        "```sh",
        "aws ec2 associate-iam-instance-profile --instance-id INSTANCE_ID "
        f"--iam-instance-profile Name={profile}",
        "```",
        "",
        "Then remove the key from `~/.aws/credentials`, the environment and any config file on "
        "the instance (and its AMI / user data).",
    ]


def _codebuild(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    return [
        "Make the role the project's service role:",
        "",
        "```sh",
        f"aws codebuild update-project --name PROJECT --service-role {h.role_arn}",
        "```",
        "",
        f"Then {_REMOVE_ENV} from the project (and the buildspec's `env`).",
    ]


def _vendor(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    lines = [
        "Give the vendor the role to assume instead of the key:",
        "",
        f"- role ARN: `{h.role_arn}`",
        f"- ExternalId: `{h.external_id or 'see the plan'}`",
    ]
    if h.vendor_account:
        lines.append(f"- only their account `{h.vendor_account}` may assume it")
    lines += ["", "Once they confirm it works, ask them to delete the key from their side."]
    return lines


def _on_premises(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    return [
        "Use IAM Roles Anywhere: the plan's trust anchor (your CA) and profile for this role; "
        "then, on the host, replace the key in `~/.aws/config` with:",
        "",
        "```ini",
        "[profile workload]",
        "credential_process = aws_signing_helper credential-process "
        "--certificate /path/cert.pem --private-key /path/key.pem "
        "--trust-anchor-arn TRUST_ANCHOR_ARN --profile-arn PROFILE_ARN "
        f"--role-arn {h.role_arn}",
        "```",
        "",
        "Then remove the key from `~/.aws/credentials` and the environment.",
    ]


def _terraform(h: WorkloadHandoff, ctx: HandoffContext) -> list[str]:
    return [
        f"Make the pipeline assume `{h.role_arn}` (its CI's OIDC, or the runner's instance "
        'role) — in the provider: `assume_role { role_arn = "..." }` or the CI\'s credentials '
        f"step — and {_REMOVE_ENV} from the pipeline's variables.",
    ]


_CHANGES = {
    "github-actions": _github,
    "lambda": _lambda,
    "ecs": _ecs,
    "ec2": _ec2,
    "codebuild": _codebuild,
    "vendor": _vendor,
    "on-premises": _on_premises,
    "terraform": _terraform,
}


def key_quiet_on(h: WorkloadHandoff, ctx: HandoffContext) -> date:
    """The day the keys will have been quiet ``inactive_days`` if nothing uses them again (the
    disable gate lets the user go then even if the role is never used), not before the notice
    period's end."""
    if h.last_used is None:
        return ctx.disable_on
    return max(ctx.disable_on, (h.last_used + timedelta(days=ctx.inactive_days)).date())


def render_owner(owner: str, handoffs: list[WorkloadHandoff], ctx: HandoffContext) -> str:
    """One owner's file: each of their workload users, what to change, and when."""
    lines = [
        f"# Your workloads move from IAM user keys to roles ({ctx.migration})",
        "",
        f"Owner: **{owner}**",
        "",
        "Each workload below signs its calls with a long-lived access key of an IAM user. A role "
        "is ready for it: switch the workload to the role, remove the key from where it is "
        "written down, and iamc disables, then deletes, the IAM user.",
        "",
    ]
    for h in handoffs:
        change = _CHANGES.get(h.runtime)
        lines += [
            f"## {h.account_id} / {h.user} ({h.runtime})",
            "",
            f"Use the role: `{h.role_arn}`",
            "",
            *(
                change(h, ctx)
                if change
                else [f"Make the workload assume `{h.role_arn}` and remove its key."]
            ),
            "",
            "### Its keys",
            "",
            *([f"- {k}" for k in h.keys] or ["- none left"]),
            "",
            "### Where the key is written down (remove it there)",
            "",
            *(
                [f"- {w}" for w in h.written_down]
                or ["- the key scan found it nowhere; check your own secrets stores"]
            ),
            "",
            "### When the IAM user is disabled",
            "",
            f"Switch by **{ctx.disable_on.isoformat()}**. iamc disables the IAM user (keys "
            "Inactive, then deleted after the bake period) once the role has been used after "
            f"the key's last use, or once its keys have been quiet for {ctx.inactive_days} "
            f"days: on **{key_quiet_on(h, ctx).isoformat()}** at the earliest if nothing uses "
            "the key again. While the key is used and the role is not, it is left alone. "
            f"`iamc workloads -c {ctx.spec_path}` shows when the key was last used and when "
            "the role was first used.",
            "",
        ]
    return mask_key_ids_in("\n".join(lines))


def _file_stem(owner: str) -> str:
    if owner == UNOWNED:
        return "unowned"
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", owner).strip("_") or "owner"


def write_handoffs(
    handoffs: list[WorkloadHandoff], ctx: HandoffContext, out_dir: Path
) -> list[dict[str, Any]]:
    """Write ``workloads/<owner>.md`` per owner and ``workloads/workloads.csv``; return the rows.

    Writes nothing when there is no workload to hand off.
    """
    if not handoffs:
        return []
    target = out_dir / "workloads"
    target.mkdir(parents=True, exist_ok=True)
    owners: dict[str, list[WorkloadHandoff]] = {}
    for h in handoffs:
        owners.setdefault(h.owner, []).append(h)
    rows = []
    for owner, theirs in sorted(owners.items()):
        markdown = target / f"{_file_stem(owner)}.md"
        markdown.write_text(render_owner(owner, theirs, ctx), encoding="utf-8")
        rows.extend(
            {
                "owner": owner,
                "account_id": h.account_id,
                "user": h.user,
                "runtime": h.runtime,
                "role_arn": h.role_arn,
                "repository": h.repository or "",
                "keys": "; ".join(h.keys),
                "written_down": mask_key_ids_in("; ".join(h.written_down)),
                "switch_by": ctx.disable_on.isoformat(),
                "key_quiet_on": key_quiet_on(h, ctx).isoformat(),
                "markdown_file": str(markdown),
            }
            for h in theirs
        )
    (target / "workloads.csv").write_text(
        csv_export.render_csv(CSV_COLUMNS, rows), encoding="utf-8"
    )
    return rows
