"""Runbook step 5: the disable and delete stages, one account per task, one user at a time.

``flows.apply`` checks, leases and records the run; this module walks each account's users
through the journaled executor. Before a user's first change in every run, the stage's live
preconditions (``flows.preconditions``) are re-proved; a user they refuse, or whose step fails,
stops alone: the account's other users go on.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from domain.errors import ActionError
from domain.plan import PlanAction, Stage
from domain.progress import emit
from domain.retire import parse_user
from flows import preconditions
from state.journal import DONE_STATUSES, FAILED

if TYPE_CHECKING:
    from flows.apply import AccountReport, _Runtime

log = logging.getLogger(__name__)

# Users of one account worked on at once. IAM's rate is per account and the session's limiter
# holds every thread to it; a few threads only hide each call's latency.
USER_CONCURRENCY = 4
# Accounts worked on at once outside a Prefect flow: each has its own IAM rate, so more
# accounts at once costs no account anything.
RETIRE_ACCOUNT_CONCURRENCY = 16


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class UserWork:
    """One user's actions of the stage, in plan order."""

    account_id: str
    user: str
    actions: list[PlanAction] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.account_id}/{self.user}"


def users_of(actions: list[PlanAction]) -> list[UserWork]:
    """Group an account's actions by user, keeping the plan's order within each user."""
    grouped: dict[tuple[str, str], UserWork] = {}
    for action in actions:
        key = (action.account_id or "", action.target)
        grouped.setdefault(key, UserWork(*key)).actions.append(action)
    for work in grouped.values():
        # The quarantine goes on first: from that moment every credential grants nothing.
        work.actions.sort(key=lambda a: a.kind != "attach-quarantine-policy")
    return list(grouped.values())


def _refuse(report: AccountReport, work: UserWork, reason: str) -> None:
    for action in work.actions:
        report.statuses.setdefault(action.id, "blocked")
    report.errors.append(f"refused {work.key}: {reason}")
    report.refused.append({"account_id": work.account_id, "user": work.user, "reason": reason})
    emit("user-refused", user=work.key, reason=reason)
    log.warning("refused %s: %s", work.key, reason)


def _run_user(rt: _Runtime, work: UserWork, report: AccountReport) -> bool:
    """Run a user's actions in order; the first one that fails or waits stops this user."""
    for action in work.actions:
        try:
            report.statuses[action.id] = rt.executor.run(action)
        except ActionError as err:
            # Blocked (a prerequisite is not done), refused by AWS, or a conflict: this
            # user stops here, with the reason; the others go on.
            report.statuses[action.id] = FAILED
            report.errors.append(f"{work.key}: {err}")
            return False
    return True


# -- one user ------------------------------------------------------------------------------------


def retire_user(rt: _Runtime, stage: str, work: UserWork, report: AccountReport) -> bool:
    """Re-prove the stage's live preconditions, then run the user's actions in order.

    The checks run before the user's first change in every run — a first run, a resume and a
    Retry alike (``flows.preconditions``); a user whose actions are all done is not re-read.
    """
    if preconditions.pending(rt, work.actions):
        problems = preconditions.user_refusals(rt, stage, work)
        if problems:
            _refuse(report, work, "; ".join(problems))
            return False
    return _run_user(rt, work, report)


# -- per account ---------------------------------------------------------------------------------


def retire_account(
    rt: _Runtime, account_id: str, actions: list[PlanAction], stage: str
) -> AccountReport:
    """Run the disable or delete stage for one account's users."""
    from flows.apply import AccountReport

    report = AccountReport(account_id)
    preconditions.preconditions_of(stage)  # a stage that declares none can't run
    work = users_of(actions)

    def one_user(user: UserWork) -> bool:
        # A dead process (or one that lost its lease) does no more work, not even the reads
        # before a user's first step.
        rt.executor.check_alive()
        return retire_user(rt, stage, user, report)

    with ThreadPoolExecutor(
        max_workers=USER_CONCURRENCY, thread_name_prefix=f"{stage}-{account_id}"
    ) as pool:
        for future in [pool.submit(one_user, user) for user in work]:
            future.result()
    done = sum(1 for a in actions if report.statuses.get(a.id) in DONE_STATUSES)
    log.info("account %s: %s of %s %s actions done", account_id, done, len(actions), stage)
    return report


@task(
    name="retire-account",
    task_run_name="{stage} {account_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def retire_account_task(
    rt: _Runtime, account_id: str, actions: list[PlanAction], stage: str
) -> AccountReport:
    report = retire_account(rt, account_id, actions, stage)
    if report.errors:
        # The task's colour tells the truth: this account has users that did not finish.
        log.warning("account %s: %s", account_id, "; ".join(report.errors))
    return report


def retire_accounts(
    rt: _Runtime, stage: str, actions: list[PlanAction], in_flow: bool, concurrency: int
) -> list[AccountReport]:
    """Every account of the stage, in parallel (IAM's rate is per account)."""
    grouped: dict[str, list[PlanAction]] = {}
    for action in actions:
        grouped.setdefault(action.account_id or "", []).append(action)
    accounts = sorted(grouped.items())
    if stage == Stage.DELETE:

        def store_snapshot(account_id: str, user: str, content: dict[str, Any]) -> None:
            rt.store.retired.save_user_snapshot(
                migration_id=rt.migration_id,
                plan_id=rt.plan_id,
                run_id=rt.executor.run_id,
                account_id=account_id,
                user_name=user,
                user_id=content["user_id"],
                arn=content["arn"],
                taken=rt.clock(),
                content=content,
            )

        rt.ctx.snapshot_sink = store_snapshot
    if in_flow:
        futures = [
            retire_account_task.submit(rt, account_id, account_actions, stage)
            for account_id, account_actions in accounts
        ]
        return [future.result() for future in futures]
    workers = max(concurrency, RETIRE_ACCOUNT_CONCURRENCY)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retire") as pool:
        futures2 = [
            pool.submit(retire_account, rt, account_id, account_actions, stage)
            for account_id, account_actions in accounts
        ]
        return [future.result() for future in futures2]


def refused_by_plan(plan: Any) -> list[str]:
    """Users the plan itself refuses (user-scoped blocking findings), with the reason."""
    return [f"{u.account_id}/{u.user}: {u.reason}" for u in plan.refused_users()]


def entries_of_user(entries: list[Any], user: str, run_id: int) -> list[Any]:
    """The journal rows of one IAM user (``ACCOUNT/NAME``) among a stage's rows.

    Raises:
        ApplyRefused: The stage did nothing to that user.
    """
    from domain.errors import ApplyRefused

    account_id, name = parse_user(user)
    found = [
        e
        for e in entries
        if e.account_id == account_id and (e.intent.get("action") or {}).get("target") == name
    ]
    if not found:
        raise ApplyRefused(
            f"run {run_id}'s plan stage did nothing to {user}: no such user in it; nothing "
            "was changed"
        )
    return found
