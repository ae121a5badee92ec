"""Runbook step after the workloads step: what each IAM user used in the least-privilege window.

Per account, one task (``usage 893263693528 acme-prod-app``): for each non-protected IAM user
of the latest inventory, IAM's action-level service-last-accessed report and its CloudTrail
management events in ``[least_privilege] window_days`` (``tasks.access_advisor``), joined into
a ``domain.usage.UserUsage``. Reads only; stored as one ``UsageRead`` (``store.usage``) that
the plan's least-privilege section relies on. Nothing unread passes as unused: an account that
could not be read ends Failed with AWS's reason and its users are listed unread as
(account, "*"); a user whose job FAILED, or who is gone, is unread with why.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from console.operator import artifact_key, flow_run_id, publish_markdown, run_logger
from console.run_names import step_run_name
from domain.errors import NoInventoryError
from domain.records import AccountInventory, User, UserClass
from domain.usage import UsageRead, UserUsage, iso_utc
from engine.account_steps import AccountFailure, account_task_result, failures_text
from engine.account_work import account_label, settle
from engine.migration import Migration
from state.usage import USAGE_RUN
from tasks.access_advisor import AccountUsage, JobPoll, read_account_usage
from tasks.aws import AwsSessions


class _Runtime:
    """What the account tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(self, spec: Any, sessions: AwsSessions, now: datetime, poll: JobPoll):
        self.sessions = sessions
        self.now = now
        self.poll = poll
        self.window_days = spec.least_privilege.window_days
        self.regions = tuple(dict.fromkeys([*spec.scan.regions, spec.region]))


def usage_users(inventory: AccountInventory) -> list[User]:
    """The account's users whose usage is read: every one but the protected."""
    return [u for u in inventory.users if u.user_class != UserClass.PROTECTED]


def read_account(rt: _Runtime, inventory: AccountInventory) -> AccountUsage:
    """One account's users' usage (one account's work: may raise)."""
    account_id = inventory.account.account_id
    rt.sessions.check_access(account_id)  # a missing role is reported as such, first
    session = rt.sessions.for_account(account_id)
    return read_account_usage(
        session,
        account_id,
        {u.name: u.arn for u in usage_users(inventory)},
        window_days=rt.window_days,
        now=rt.now,
        regions=rt.regions,
        poll=rt.poll,
    )


@task(
    name="usage-account",
    task_run_name="usage {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def usage_account(rt: _Runtime, inventory: AccountInventory, label: str) -> Any:
    """Ends Failed with AWS's reason when the account could not be read (its role, its calls)."""
    account_id = inventory.account.account_id
    found = account_task_result(account_id, label, lambda: read_account(rt, inventory))
    if isinstance(found, AccountUsage):
        services = sorted({s for u in found.users for s in u.services})
        run_logger().info(
            "%s: %d user(s) read, %d not; services used: %s",
            label,
            len(found.users),
            len(found.unread),
            ", ".join(services) or "none",
        )
    return found


@flow(
    name="usage",
    flow_run_name=step_run_name("usage"),
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=8),
)
def usage_flow(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Read what every IAM user to migrate used in the least-privilege window.

    Args:
        spec_path: The migration spec (TOML).
        profile: An AWS profile for the management account (default: the boto3 chain).

    Returns:
        The run's summary: run id, read id, window, users read and unread per account,
        accounts not read (and why).
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        snapshot = store.snapshots.latest_snapshot(migration_id)
        if snapshot is None:
            raise NoInventoryError(
                f"no inventory yet for migration {spec.name!r}: run '{mig.hint('inventory')}' "
                "first, so its users are known"
            )
        run_id = store.runs.start_run(
            migration_id, USAGE_RUN, {"spec": spec_path, "prefect_flow_run_id": flow_run_id()}
        )
        try:
            inventories = store.snapshots.load_snapshot(snapshot.id)
            sessions = AwsSessions.from_spec(spec, profile=profile)
            rt = _Runtime(spec, sessions, _now(), JobPoll())
            read = UsageRead(None, snapshot.id, rt.window_days, "")
            for inventory in inventories:
                if inventory.error:
                    # The inventory could not list its users: none of them is known.
                    read.unread[(inventory.account.account_id, "*")] = (
                        f"not in the inventory: {inventory.error}"
                    )
            readable = [i for i in inventories if not i.error and usage_users(i)]
            futures = [
                (i, usage_account.submit(rt, i, account_label(i) or i.account.account_id))
                for i in readable
            ]
            failures: list[AccountFailure] = []
            for inventory, future in futures:
                outcome = settle(future)
                account_id = inventory.account.account_id
                if isinstance(outcome, AccountFailure):
                    failures.append(outcome)
                    read.unread[(account_id, "*")] = outcome.reason
                    continue
                for usage in outcome.users:
                    read.users[usage.key] = usage
                for user, why in outcome.unread.items():
                    read.unread[(account_id, user)] = why
            read.read_at = iso_utc(_now())
            store.usage.save_read(migration_id, run_id, read)
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        summary = usage_summary(run_id, read, inventories)
        message = _incomplete(run_id, read, failures, mig.hint("usage"))
        publish_markdown(
            artifact_key(spec.name, "usage"),
            usage_markdown(read, inventories),
            f"Usage read {read.id} of {spec.name}: {len(read.users)} user(s) read"
            + (f"; INCOMPLETE, {len(read.unread)} not read" if read.unread else ""),
        )
        store.runs.finish_run(run_id, "succeeded", summary=summary, error=message)
    if message:
        from prefect.states import Completed

        run_logger().warning("%s", message)
        return Completed(message=message, data=summary)
    return summary


def _now() -> datetime:
    return datetime.now(UTC)


def usage_summary(
    run_id: int, read: UsageRead, inventories: list[AccountInventory]
) -> dict[str, Any]:
    """Per account: users read, users unread (with why); the read's id, window and hash."""
    accounts: dict[str, dict[str, Any]] = {
        i.account.account_id: {"read": 0, "unread": {}} for i in inventories
    }
    for account_id, _ in read.users:
        accounts.setdefault(account_id, {"read": 0, "unread": {}})["read"] += 1
    for (account_id, user), why in read.unread.items():
        accounts.setdefault(account_id, {"read": 0, "unread": {}})["unread"][user] = why
    return {
        "run_id": run_id,
        "read_id": read.id,
        "snapshot_id": read.snapshot_id,
        "window_days": read.window_days,
        "users": len(read.users),
        "unread": len(read.unread),
        "accounts": dict(sorted(accounts.items())),
        "accounts_failed": {a: why for (a, u), why in read.unread.items() if u == "*"},
        "content_hash": read.content_hash(),
    }


def _incomplete(
    run_id: int, read: UsageRead, failures: list[AccountFailure], again: str
) -> str | None:
    if not read.unread:
        return None
    users = [f"{a} {u}: {why}" for (a, u), why in sorted(read.unread.items()) if u != "*"]
    lines = ([failures_text(failures)] if failures else []) + users
    return (
        f"usage run {run_id} is INCOMPLETE: {len(read.unread)} account(s) or user(s) not read; "
        "least privilege leaves their access as it is:\n  "
        + "\n  ".join(lines or [f"{a}: {why}" for (a, _), why in read.unread.items()])
        + f"\nFix the cause, then press Retry on this flow run, or run '{again}' again."
    )


def usage_markdown(read: UsageRead, inventories: list[AccountInventory]) -> str:
    """The read for people: per account, users read, the services each used, who was not."""
    names = {i.account.account_id: account_label(i) for i in inventories}
    accounts = sorted({a for a, _ in read.users} | {a for a, _ in read.unread} | set(names))
    lines = [
        f"# Usage read {read.id or ''}".rstrip(),
        "",
        f"Window: the last **{read.window_days} days** up to {read.read_at}. "
        "Services and actions from IAM's last-accessed data (actions for S3, EC2, IAM and "
        "Lambda) and CloudTrail management events.",
        "",
    ]
    for account_id in accounts:
        users = sorted(
            (u for (a, _), u in read.users.items() if a == account_id), key=lambda u: u.user
        )
        unread = sorted((u, why) for (a, u), why in read.unread.items() if a == account_id)
        lines += [f"## {names.get(account_id) or account_id}", ""]
        lines.append(f"{len(users)} user(s) read, {len(unread)} not read.")
        lines.append("")
        if users:
            lines += ["| user | services used | actions used |", "|---|---|---|"]
            lines += [_user_row(u) for u in users]
            lines.append("")
        if unread:
            lines += ["**Not read** (their access is left as it is):", ""]
            lines += [f"- {'whole account' if u == '*' else u}: {why}" for u, why in unread]
            lines.append("")
    return "\n".join(lines)


def _user_row(usage: UserUsage) -> str:
    services = ", ".join(sorted(usage.services)) or "none"
    actions = ", ".join(sorted(usage.actions)) or "-"
    return f"| {usage.user} | {services} | {actions} |"


def run_usage(spec_path: str, profile: str | None = None) -> dict[str, Any]:
    """Run the usage flow (what ``iamc usage`` does)."""
    return usage_flow(str(spec_path), profile)
