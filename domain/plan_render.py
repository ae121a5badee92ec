"""Renderings of a plan: Markdown for a change board, JSON for machines, CSV of assignments."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from domain import csv_export
from domain.access import boundary_label
from domain.central_roles_render import account_roles_markdown, central_roles_markdown
from domain.central_spec import CENTRAL_ROLES
from domain.deletion import deletes_in
from domain.json_compat import dumps_indented
from domain.key_risks import worklist_markdown
from domain.keys import mask_key_id
from domain.least_privilege_render import least_privilege_markdown
from domain.markdown_cells import cell
from domain.plan import Outcome, Plan
from domain.stages import authorised_by, stage_names

_OUTCOME_WORDS = {
    Outcome.MIGRATE: "migrate to Identity Center, then disable and delete",
    Outcome.RETIRE: "unused: disable and delete",
    Outcome.SKIP_PROTECTED: "skipped: protected",
    Outcome.REPLACE_WITH_ROLE: "workload: a role replaces its key, then disable and delete",
    Outcome.SKIP_WORKLOAD: "skipped: workload (needs a role)",
    Outcome.SKIP_UNMATCHED: "skipped: no identity matches",
    Outcome.SKIP_AMBIGUOUS: "skipped: ambiguous identity",
    Outcome.SKIP_BLOCKED: "skipped: blocking error",
}
# The central-roles target's words where they differ (settings["target"]).
_CENTRAL_OUTCOME_WORDS = {
    **_OUTCOME_WORDS,
    Outcome.MIGRATE: "migrate to central roles, then disable and delete",
}


def _is_central(plan: Plan) -> bool:
    return plan.settings.get("target") == CENTRAL_ROLES


def _unseen_label(finding: Any) -> str:
    name = finding.details.get("account_name")
    label = f"`{finding.account_id}`" + (f" ({cell(name)})" if name else "")
    return f"{label}: {cell(finding.details.get('reason', 'not inventoried'))}"


# Key ids are matched as whole word runs as long as an access key id can be (the API
# promises 16-128 word characters, so no narrower shape is assumed); ``\b`` on both sides is
# "not preceded or followed by a word character". See _key_id_pattern.


# Distinct leading characters of the key ids beyond which one pattern per prefix stops paying.
_MAX_PREFIXES = 64
_PREFIX = 4
_WORD_CHAR = re.compile(r"\w")
_WORD_CHAR_BYTES = re.compile(rb"\w")


def _mask_words(text: Any, key_ids: set[str], masked: dict[Any, Any]) -> Any:
    """Replace every whole word of ``text`` (str, or ASCII bytes) that is a key id.

    The pattern starts with the ids' first four characters (``AKIA``, ``ASIA``...), a literal
    the regex engine searches for quickly, instead of stopping at every long word (a plan.json
    has 100,000 64-hex fingerprints); whether the run starts a word is checked per match.
    Every whole word that is one of the ids matches, as with the generic 16-128 word-run
    pattern, which is used when the ids have too many distinct prefixes.
    """
    as_bytes = isinstance(text, bytes)
    prefixes = {key_id[:_PREFIX] for key_id in key_ids}
    if len(prefixes) > _MAX_PREFIXES or any(len(key_id) < 16 for key_id in key_ids):
        generic = re.compile(rb"\b\w{16,128}\b" if as_bytes else r"\b\w{16,128}\b")
        return generic.sub(lambda m: masked.get(m.group(), m.group()), text)
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes))
    source = rf"(?:{alternatives})\w{{{16 - _PREFIX},{128 - _PREFIX}}}\b"
    pattern = re.compile(source.encode() if as_bytes else source)
    word_char = _WORD_CHAR_BYTES if as_bytes else _WORD_CHAR

    def replace(match: re.Match[Any]) -> Any:
        start = match.start()
        if start and word_char.match(text, start - 1):
            return match.group()  # inside a longer word: not a key id standing alone
        return masked.get(match.group(), match.group())

    return pattern.sub(replace, text)


def mask_key_ids(text: str, key_ids: set[str]) -> str:
    """Key ids appear as AKIA…WXYZ outside the state DB (the plan there keeps them whole).

    One pass over the text with one compiled pattern, whatever the number of keys: a
    ``str.replace`` per key id scanned a 50 MB plan.json 20,000 times. Key ids are masked
    where they stand as whole words, which is how plans write them (JSON strings, table cells).
    """
    if not key_ids:
        return text
    return _mask_words(text, key_ids, {key_id: mask_key_id(key_id) for key_id in key_ids})


def render_json_bytes(
    plan: Plan, meta: dict[str, Any], content: dict[str, Any] | None = None
) -> bytes:
    """plan.json as UTF-8: the plan's content with ``meta`` (id, hash, approvals), key ids
    masked; the same text as ``json.dumps(..., indent=2, sort_keys=True, default=str)``.

    Args:
        content: ``plan.content()`` if the caller has it already (it is not built twice).
    """
    data = {**meta, **(plan.content() if content is None else content)}
    text = dumps_indented(data)
    del data
    key_ids = plan.access_key_ids()
    if not key_ids:
        return text
    # ASCII bytes, where \w means what it means in str here: one pass, as mask_key_ids.
    masked = {key_id.encode(): mask_key_id(key_id).encode() for key_id in key_ids}
    return _mask_words(text, key_ids, masked)


def render_json(plan: Plan, meta: dict[str, Any], content: dict[str, Any] | None = None) -> str:
    """plan.json (:func:`render_json_bytes`) as text."""
    return render_json_bytes(plan, meta, content).decode()


def render_assignments_csv(plan: Plan) -> str:
    columns = [
        "account_id",
        "permission_set_name",
        "principal_type",
        "principal_id",
        "principal_name",
        "reason",
    ]
    return csv_export.render_csv(columns, plan.assignments, extra="ignore")


def _in_aws(name: str, notes: dict[str, str], updating: set[str], known: bool) -> str:
    """Whether applying creates the set, adopts the organization's, or updates it."""
    if name in updating:
        return f"{notes.get(name, 'exists')}; **updated** (see above)"
    if name in notes:
        return f"{notes[name]}; adopted as is"
    return "new: created" if known else "created, or adopted if identical"


# Prefect refuses an event over 1.5 MB (PREFECT_EVENTS_MAXIMUM_SIZE_BYTES) and an artifact's
# event carries its Markdown; the UI also renders a document that long slowly.
ARTIFACT_MAX_BYTES = 1_000_000
_ACCOUNT_HEADING = "\n### Account "


def artifact_markdown(
    markdown: str, full_document: str, plan_id: Any, max_bytes: int = ARTIFACT_MAX_BYTES
) -> str:
    """The plan's Markdown for the Prefect UI: whole, or cut before the first account table
    that would pass ``max_bytes``, saying where the whole plan is. The summary, risks and
    permission sets come first, so they are always shown."""
    if len(markdown.encode()) <= max_bytes:
        return markdown

    def note(left_out: int) -> str:
        return (
            f"\n\n---\n\n**Not shown here: {left_out} more account(s).** The whole plan is "
            f"in `{full_document}`; `iamc plan show {plan_id}` prints it.\n"
        )

    budget = max_bytes - len(note(markdown.count(_ACCOUNT_HEADING)).encode())
    # Bytes, not characters: a character cut in two at the end is dropped.
    head = markdown.encode()[:budget].decode(errors="ignore")
    cut = head.rfind(_ACCOUNT_HEADING)
    if cut <= 0:
        cut = head.rfind("\n")
    return markdown[:cut] + note(markdown.count(_ACCOUNT_HEADING, cut))


def render_markdown(plan: Plan, meta: dict[str, Any]) -> str:
    """The change board's document: summary first, then risks, permission sets, per account."""
    lines: list[str] = []
    add = lines.append
    outcomes = Counter(u.outcome for u in plan.users)
    stages = Counter(a.stage for a in plan.actions)
    irreversible = [a for a in plan.actions if a.irreversible]
    accounts = sorted({u.account_id for u in plan.users})
    blocking = plan.blocking
    warnings = [f for f in plan.findings if f.severity == "warning"]
    central = _is_central(plan)
    words = _CENTRAL_OUTCOME_WORDS if central else _OUTCOME_WORDS

    add(f"# Migration plan `{plan.migration}` — plan {meta.get('plan_id', '?')}")
    add("")
    # Not meta.get("hash", plan.content_hash()): that hashes the whole plan every time.
    add(f"- **Plan hash:** `{meta['hash'] if 'hash' in meta else plan.content_hash()}`")
    if plan.wave:
        add(
            f"- **Wave:** `{plan.wave['name']}`: {len(plan.wave['accounts'])} account(s) "
            f"({', '.join(plan.wave['accounts'])})"
        )
    if plan.drift:
        unread = plan.drift.get("accounts_not_read") or {}
        add(
            f"- **Drift plan:** puts back {len(plan.drift.get('findings') or [])} drift(s) read "
            f"at {plan.drift.get('read_at')} (`iamc drift`); no wave's plan"
            + (f"; **partial read, not read: {', '.join(sorted(unread))}**" if unread else "")
        )
    add(
        f"- **Computed from:** inventory snapshot {plan.inventory_snapshot_id}, "
        f"mapping run {plan.mapping_run_id}"
        + (f", usage read {plan.usage_read_id}" if plan.usage_read_id is not None else "")
    )
    if meta.get("created"):
        add(f"- **Computed at:** {meta['created']}")
    spec_boundary = plan.settings.get("permissions_boundary")
    add(
        f"- **Permissions boundary** (every permission set and every role iamc creates): "
        f"`{boundary_label(spec_boundary)}`"
        if spec_boundary
        else "- **Permissions boundary:** none in the spec ([permission_sets] boundary); a "
        "set or role keeps the boundary of the IAM user it comes from"
    )
    runs = meta.get("runs") or []
    if blocking:
        add(f"- **Status:** **{len(blocking)} blocking error(s): this plan cannot be approved**")
    elif runs:
        add("- **Status:** this plan has been acted on; per stage below")
    else:
        add("- **Status:** no blocking errors; dry run — nothing has been changed")
    for approval in meta.get("approvals", []):
        add(
            f"- **{approval['decision']}** for stage `{approval['stage']}` by "
            f"{approval['approver']} (ticket {approval['ticket']}) at {approval['at']}"
        )
    for stage in stage_names():
        stage_runs = [r for r in runs if r.get("stage") == stage]
        if not stage_runs:
            continue
        approved = [
            a
            for a in meta.get("approvals", [])
            if a["stage"] in authorised_by(stage) and a["decision"] == "approved"
        ]
        by = (
            f"approved by {approved[0]['approver']} (ticket {approved[0]['ticket']})"
            if approved
            else "no approval on record"
        )
        done = "; ".join(
            f"{'applied' if r['kind'] == 'apply' else 'rolled back'} by run {r['id']} "
            f"({r['status']}" + (f", finished {r['finished']}" if r.get("finished") else "") + ")"
            for r in stage_runs
        )
        add(f"- **Stage `{stage}`:** {by}; {done}")
    add("")
    add("## Summary")
    add("")
    add("| | |")
    add("|---|---:|")
    add(f"| Accounts | {len(accounts)} |")
    unseen = [f for f in plan.findings if f.kind == "account-not-inventoried"]
    if unseen:
        add(
            f"| **Accounts not inventoried** (blocking) | **{len(unseen)}**: "
            + "; ".join(_unseen_label(f) for f in unseen)
            + " |"
        )
    excluded = [f for f in plan.findings if f.kind == "account-not-inventoried-excluded"]
    if excluded:
        add(
            f"| Accounts not inventoried, excluded by the spec | {len(excluded)}: "
            + "; ".join(_unseen_label(f) for f in excluded)
            + " |"
        )
    add(f"| IAM users | {len(plan.users)} |")
    for outcome in Outcome:
        if outcomes[outcome]:
            add(f"| — {words[outcome]} | {outcomes[outcome]} |")
    if central:
        member_roles = Counter(a.kind for a in plan.actions)
        add(f"| Accesses (one member role each where it is needed) | {len(plan.permission_sets)} |")
        add(f"| Member roles to create | {member_roles['create-member-role']} |")
        add(
            f"| Central account: groups / assume policies / memberships | "
            f"{member_roles['create-access-group']} / {member_roles['put-access-policy']} / "
            f"{member_roles['add-group-member']} |"
        )
    else:
        add(f"| Permission sets to create | {len(plan.permission_sets)} |")
        add(f"| Account assignments to create | {len(plan.assignments)} |")
    for stage in stage_names():
        add(f"| Actions in stage `{stage}` | {stages[stage]} |")
    add(
        f"| **Irreversible actions** (stage `delete`, not before {plan.settings.get('bake_days')} "
        f"days after disable) | **{len(irreversible)}** |"
    )
    add(
        "| **IAM users the `delete` stage deletes** (approved on its own, quoting this number: "
        f"`--stage delete --deletes N`) | **{deletes_in(plan)}** |"
    )
    add("")
    add(
        "Stages are approved and applied separately (`all` approves provision, replace and "
        "disable, "
        "never delete): `provision` creates "
        + (
            "a role per access in each member account, trusting exactly the central "
            f"account's people who hold it there ({plan.settings['central']['account']}), and "
            "there the policies that let them switch into it; `replace`"
            if central
            else "access in Identity Center; `replace`"
        )
        + " creates an IAM role under `/iamc/` for each placed workload, "
        "with the runtime's trust and the user's permissions (reversible; every trust policy "
        "is checked, a loose one blocks it); "
        "`disable` deactivates keys and attaches a deny-all quarantine policy "
        "(reversible); `delete` removes users in the order AWS requires, after a snapshot "
        "(irreversible: a deleted user's keys, password and MFA can never be restored)."
    )
    add("")
    add(
        "Before each user's first delete action these preconditions are checked live, and a "
        "user that fails one stays disabled with the reason: disabled by this migration at "
        f"least {plan.settings.get('bake_days')} days before (journal time); no evidence of use "
        "since then (CloudTrail by user name and access key id, key last-used dates) unless a "
        "decision was recorded after the newest evidence; still quarantined with no active "
        "credential; no resource policy in its account names it (S3 bucket, KMS key, SQS "
        "queue, SNS topic, IAM role trust, Secrets Manager and Lambda function policies)."
    )
    add("")
    if blocking:
        add("## Blocking errors")
        add("")
        for finding in blocking:
            where = " ".join(x for x in (finding.account_id, finding.subject) if x)
            add(f"- **{finding.kind}** {where}: {cell(finding.message)}")
        for finding in plan.findings:
            if finding.kind == "blocked-access-left-out":
                add("")
                add(
                    f"Left out of this plan: {cell(finding.message)} "
                    "(the counts above and assignments.csv do not include them)."
                )
        add("")
    add("## Risks")
    add("")
    risks = 0
    for finding in warnings:
        where = " ".join(x for x in (finding.account_id, finding.subject) if x)
        add(f"- {finding.kind} {where}: {cell(finding.message)}")
        risks += 1
    for finding in plan.findings:
        if finding.kind == "boundary-conflict":
            # Blocking for its user only (user-scoped): listed here, since the plan goes on.
            add(
                f"- **{finding.kind}** {finding.account_id} {finding.subject}: "
                f"{cell(finding.message)}"
            )
            risks += 1
    if plan.required_customer_policies:
        add(
            f"- {len(plan.required_customer_policies)} customer-managed policy reference(s) "
            "must exist (same name and path) in their target accounts before provisioning: "
            + ", ".join(
                f"{r['path']}{r['name']} in {r['account_id']}"
                for r in plan.required_customer_policies[:10]
            )
            + (" …" if len(plan.required_customer_policies) > 10 else "")
        )
        risks += 1
    skipped_humans = outcomes[Outcome.SKIP_UNMATCHED] + outcomes[Outcome.SKIP_AMBIGUOUS]
    if skipped_humans:
        add(
            f"- {skipped_humans} human user(s) stay as IAM users until the IdP team provisions "
            "or disambiguates their identity (`iamc report mapping --unmatched`)."
        )
        risks += 1
    if outcomes[Outcome.REPLACE_WITH_ROLE]:
        add(
            f"- {outcomes[Outcome.REPLACE_WITH_ROLE]} workload user(s) get a role (stage "
            "`replace`): each keeps its key until its owner switches the workload to the role."
        )
        risks += 1
    if outcomes[Outcome.SKIP_WORKLOAD]:
        add(
            f"- {outcomes[Outcome.SKIP_WORKLOAD]} workload user(s) keep their keys: each needs an "
            "IAM role for its workload first."
        )
        risks += 1
    if not risks:
        add("- none found")
    add("")
    lines.extend(worklist_markdown(plan))
    updates = [a for a in plan.actions if a.kind == "update-permission-set"]
    if updates:
        add("## Updates to the organization's permission sets")
        add("")
        add(
            "These sets already exist (an earlier wave created them) and are used there: "
            "the update changes them for every account that has them, and each such account "
            "is provisioned again. A rollback of this plan restores the previous definition "
            "and provisions it again."
        )
        add("")
        add("| Permission set | Created by | Changes | Accounts re-provisioned |")
        add("|---|---|---|---|")
        provisions: dict[str, list[str]] = {}
        for action in plan.actions:
            if action.kind == "provision-permission-set" and action.account_id:
                provisions.setdefault(action.target, []).append(action.account_id)
        for action in updates:
            accounts_touched = sorted(provisions.get(action.target, []))
            add(
                f"| `{action.target}` | {cell(action.params.get('created_by') or '—')} | "
                f"{cell('; '.join(action.params.get('changes', [])))} | "
                f"{len(accounts_touched)}: {', '.join(accounts_touched) or '—'} |"
            )
        add("")
    serves = Counter(name for user in plan.users for name in user.permission_sets)
    if central:
        central_roles_markdown(plan, serves, add)
    else:
        _permission_sets(plan, meta, serves, updates, add)
    roles = [a for a in plan.actions if a.kind == "create-workload-role"]
    if roles:
        add("## Workload roles")
        add("")
        add("| Account | IAM user | Role | Runtime | Permissions boundary |")
        add("|---|---|---|---|---|")
        for action in roles:
            params = action.params
            add(
                f"| {action.account_id} | `{params['user']}` | "
                f"`{params['role_path']}{params['role_name']}` | {params['runtime']} | "
                f"{cell(params.get('permissions_boundary_arn') or '—')} |"
            )
        add("")
    if plan.least_privilege is not None:
        lines.extend(least_privilege_markdown(plan.least_privilege))
    add("## Per account")
    users_by_account: dict[str, list[Any]] = {}
    for user in plan.users:
        users_by_account.setdefault(user.account_id, []).append(user)
    assignments_by_account: dict[str, list[dict[str, Any]]] = {}
    for assignment in plan.assignments:
        assignments_by_account.setdefault(assignment["account_id"], []).append(assignment)
    for account_id in accounts:
        account_users = users_by_account[account_id]
        add("")
        add(f"### Account {account_id}")
        add("")
        add(
            "| IAM user | Class | Outcome | "
            + ("Central principal | Accesses" if central else "Identity | Permission sets")
            + " | Why |"
        )
        add("|---|---|---|---|---|---|")
        for user in account_users:
            add(
                f"| `{user.user}` | {user.user_class} | {words[user.outcome]} | "
                f"{cell(user.identity or '—')} | {cell(', '.join(user.permission_sets) or '—')} "
                f"| {cell(user.reason)} |"
            )
        account_assignments = assignments_by_account.get(account_id, [])
        if central:
            account_roles_markdown(plan, account_id, add)
        elif account_assignments:
            add("")
            add(
                "Assignments: "
                + "; ".join(
                    f"{a['principal_type'].lower()} `{a['principal_name']}` → "
                    f"`{a['permission_set_name']}`"
                    for a in account_assignments
                )
            )
    add("")
    return mask_key_ids("\n".join(lines), plan.access_key_ids())


def _customer_managed_choices(plan: Plan, add: Callable[[str], None]) -> None:
    """Per set, each customer-managed policy referenced or inlined, and why."""
    rows = [
        (ps["name"], choice)
        for ps in plan.permission_sets
        for choice in ps.get("customer_managed_choice") or []
    ]
    if not rows:
        return
    add("")
    add(
        "Customer-managed policies are referenced only where every account the set is "
        "assigned to has the same name, path and document; otherwise they are inlined."
    )
    add("")
    add("| Permission set | Policy | Choice | Why |")
    add("|---|---|---|---|")
    for name, choice in rows:
        add(
            f"| `{name}` | `{cell(choice['policy'])}` | {choice['choice']} | "
            f"{cell(choice['why'])} |"
        )


def _permission_sets(
    plan: Plan,
    meta: dict[str, Any],
    serves: Counter[str],
    updates: list[Any],
    add: Callable[[str], None],
) -> None:
    """Identity Center: each set, who it serves, whether it is created, adopted or updated."""
    add("## Permission sets")
    add("")
    if plan.permission_sets:
        add(
            "A permission set is the organization's: its name and description follow from "
            "its access alone, so another wave with the same access adopts it. *Serves* counts "
            "this plan's IAM users."
        )
        add("")
        add(
            "| Name | Serves | In AWS | Managed policies | Customer-managed | Inline | Boundary | "
            "Description |"
        )
        add("|---|---:|---|---|---|---|---|---|")
        notes = meta.get("organization_sets") or {}
        updating = {a.target for a in updates}
        for ps in plan.permission_sets:
            managed = ", ".join(a.rsplit("/", 1)[-1] for a in ps.get("aws_managed_policy_arns", []))
            customer = ", ".join(c["name"] for c in ps.get("customer_managed_policies", []))
            inline = ps.get("inline_policy")
            statements = len(inline.get("Statement", [])) if inline else 0
            boundary = boundary_label(ps.get("permissions_boundary"))
            add(
                f"| `{ps['name']}` | {serves[ps['name']]} | "
                f"{cell(_in_aws(ps['name'], notes, updating, 'organization_sets' in meta))} | "
                f"{cell(managed) or '—'} | "
                f"{cell(customer) or '—'} | "
                f"{f'{statements} statement(s)' if statements else '—'} | "
                f"{cell(boundary) or '—'} | {cell(ps.get('description', ''))} |"
            )
        _customer_managed_choices(plan, add)
    else:
        add("None.")
    add("")
