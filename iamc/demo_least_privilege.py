"""`make demo`'s least-privilege scenes: the people's use played, read, trimmed and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from engine.migration import Migration
from engine.reports import load_plan
from iamc.views.usage import print_usage_summary, usage_with_progress
from sandbox.control import SandboxControl

# What the demo's people did in the last weeks, by how the seed made them (their IAM access:
# platform-admins -> AdministratorAccess; ReadOnlyAccess; developers and auditors groups).
_PEOPLE_CALLS = {
    "console-mfa": [("s3", "ListBuckets"), ("ec2", "DescribeInstances"), ("iam", "ListRoles")],
    "console-no-mfa": [("s3", "ListBuckets"), ("ec2", "DescribeInstances")],
    "group-member": [("s3", "ListBuckets")],
}


def play_people(console: Console, control: SandboxControl, manifest: Any) -> None:
    """Play the people's own use of AWS in the window (console sessions: the sandbox records
    them in CloudTrail and IAM's last-accessed data, as for any call), for ``iamc usage``."""
    table = Table(
        title="What the people did (console sessions; iamc usage is not told)",
        title_justify="left",
    )
    for column in ("account", "user", "calls"):
        table.add_column(column, overflow="fold")
    with console.status("playing the people's use of AWS…"):
        for account in manifest.accounts:
            if account.status != "ACTIVE":
                continue
            for user in account.users:
                calls = _PEOPLE_CALLS.get(user.kind)
                if user.expected_class != "human" or not calls:
                    continue
                control.play_user_usage(account.account_id, user.name, calls, days_ago=3)
                table.add_row(
                    account.account_id, user.name, ", ".join(f"{s}:{o}" for s, o in calls)
                )
    console.print(table)


def print_losses(console: Console, spec_path: Path, plan_id: int, markdown: str) -> None:
    """What least privilege takes from each person, as the plan lists it for the board."""
    stored, _ = Migration.call(load_plan, spec_path, plan_id)
    section = stored.least_privilege
    if not section or section["mode"] != "trim":
        return
    table = Table(
        title=f"Least privilege: what each person loses (plan {plan_id}; {markdown})",
        title_justify="left",
    )
    for column in ("account", "IAM user", "now in set", "dropped or narrowed", "services"):
        table.add_column(column, overflow="fold")
    for loss in section["losses"]:
        narrowed = [f"{name} (narrowed)" for name in loss.get("policies_narrowed", {})]
        removed = loss["services_removed"] or (
            ["every service not used"] if loss["all_other_services"] else []
        )
        table.add_row(
            loss["account_id"],
            loss["user"],
            loss["permission_set"] or "none",
            ", ".join([*loss["policies_dropped"], *narrowed]),
            ", ".join(removed[:6]) + (f" +{len(removed) - 6}" if len(removed) > 6 else ""),
        )
    console.print(table)


def verify_wave(console: Console, spec_path: Path, wave: str, plan_id: int) -> None:
    """Each person's new access landed, and nobody lost what they used (the verify step)."""
    # Deferred: the flow imports Prefect, which reads its settings at import.
    from flows.verify import verify_flow

    console.print(Rule(f"{wave}: verify plan {plan_id}: access landed, nothing used was lost"))
    checked = verify_flow(str(spec_path), plan_id)
    console.print(
        f"{wave}: verify run {checked['run_id']}: {checked['people']} people in "
        f"{checked['accounts']} account(s) checked, {checked['problems']} problem(s): every "
        "action each person used in the window is allowed by their new role "
        "(SimulatePrincipalPolicy)",
        highlight=False,
    )


def usage_scene(console: Console, spec_path: Path) -> None:
    """``iamc usage``: what each person used in the window, for the plan's trim."""
    console.print(Rule("7. what each person used: iamc usage -c " + str(spec_path)))
    print_usage_summary(console, usage_with_progress(console, spec_path))
    console.print(
        "[least_privilege] mode = trim: each person's set keeps the services they used",
        highlight=False,
    )
