"""Every stage's accounts, each contained: one account's failure never sinks a run.

A stage declares what it does in one account (``StageDefinition.per_account``) and, if it
must, in the management account before any member account (``first``); the engine runs them
here, as one Prefect task per account inside a flow (named by the account, so the UI lists
"provision 603910436417 acme-prod-app") or on threads outside one. Each account is contained:
one whose role can't be assumed, or whose calls fail, ends Failed with AWS's reason; its
unfinished actions stay pending in the journal, the run records the account and the reason,
and the other accounts go on. The engine runs the accounts, not the stage, so no stage can
forget it. Only what must stop every account is let through: a conflict, a lost lease, a
crash.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from domain.errors import ConflictError, StateError
from domain.plan import PlanAction
from domain.progress import emit
from domain.stages import StageDefinition
from engine.lease import LeaseLost
from engine.stage_run import AccountReport, StageRun, prefect_task

log = logging.getLogger(__name__)

# What no account can contain: the run as a whole must stop (the journal stays consistent).
STOPS_THE_RUN = (ConflictError, LeaseLost, StateError)
MANAGEMENT = "management"


def account_label(inventory: Any) -> str:
    """``893263693528 acme-prod-app``: an account's id and, where known, its name."""
    if inventory is None:
        return ""
    account = inventory.account
    return f"{account.account_id} {account.name}".strip()


# What an operator does about an account that failed as a whole, by what AWS said.
WHAT_TO_DO = (
    (
        "AssumeRole",
        "make sure the member role exists in the account and trusts the management account "
        "(or take the account out of the plan's scope and re-plan), then Retry",
    ),
    ("cannot reach the AWS endpoint", "check the network or AWS_ENDPOINT_URL, then Retry"),
    (
        "AccessDenied",
        "compare the member role with 'iamc policy member', then Retry",
    ),
)


def failed_account(account_id: str, reason: str, actions: list[PlanAction]) -> AccountReport:
    """The report of an account none of whose unfinished work could be done, and why."""
    report = AccountReport(account_id)
    todo = next((what for cue, what in WHAT_TO_DO if cue in reason), "fix the cause, then Retry")
    report.failure = f"{reason} (what to do: {todo})"
    where = "" if account_id in reason else f"account {account_id}: "
    report.errors.append(f"{where}{report.failure}")
    for action in actions:
        report.statuses[action.id] = "not reached"
    emit("account-failed", account_id=account_id, reason=reason)
    return report


def unfinished(rt: StageRun, actions: list[PlanAction]) -> bool:
    """Whether any of the actions has no journal entry yet, or one not done."""
    for action in actions:
        entry = rt.store.journal.journal_entry(rt.plan_id, action.id)
        if entry is None or not entry.done:
            return True
    return False


def contained(
    rt: StageRun, account_id: str, actions: list[PlanAction], work: Callable[[], AccountReport]
) -> AccountReport:
    """Run one account's work; a failure of that account becomes its report, not the run's.

    The account is reached first (its role assumed) when it has unfinished work, so a
    missing role is reported as such before any of its checks; one the read-only preflight
    already found unreachable is not tried again in this run.
    """
    known = rt.account_failures.get(account_id)
    if known:
        return failed_account(account_id, known, actions)
    try:
        if account_id != MANAGEMENT and rt.ctx.reach is not None and unfinished(rt, actions):
            rt.ctx.reach(account_id)
        return work()
    except STOPS_THE_RUN:
        raise
    except Exception as err:
        return failed_account(account_id, reason_for(account_id, err), actions)


def reason_for(account_id: str, err: Exception) -> str:
    """AWS's reason (or ours) an account's work failed, the account not named twice.

    An error that is ours to fix (not AWS's, not an operator's) also leaves its traceback in
    the process log; the operator acts on the reason.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from domain.errors import IamcError
    from tasks.aws import failure_reason  # botocore's error classes

    if not isinstance(err, IamcError | ClientError | BotoCoreError):
        log.warning("account %s failed unexpectedly", account_id, exc_info=True)
    return failure_reason(err).removeprefix(f"account {account_id}: ")


# -- as Prefect tasks ------------------------------------------------------------------------


def task_outcome(label: str, work: Callable[[], Any], planned: int) -> Any:
    """Run one account's work and say how it went: a report, or a Failed state carrying it.

    ``work`` returns a report with ``statuses`` (action id -> status) and ``errors``. An
    account with errors ends Failed with one message naming the first (the others are in the
    run logs and the per-account table), and the flow goes on with the other accounts. A
    conflict, which stops the whole run, ends Failed carrying the error, for the flow to raise.
    """
    from prefect import get_run_logger
    from prefect.states import Failed

    logger = get_run_logger()
    logger.info("%s: %d action(s) to carry out", label, planned)
    try:
        report = work()
    except STOPS_THE_RUN as err:
        logger.error("%s: %s", label, err)
        return Failed(message=f"{label}: {err}", data=err)
    counts = Counter(report.statuses.values())
    logger.info(
        "%s: %s",
        label,
        ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do",
    )
    if not report.errors:
        return report
    for error in report.errors:
        logger.error("%s: %s", label, error)
    more = len(report.errors) - 1
    message = f"{label}: {report.errors[0]}"
    if more:
        message += f" (and {more} more: see the run logs and the per-account table)"
    return Failed(message=message, data=report)


def settle(future: Any) -> Any:
    """A task's report, whether it ended Completed or Failed; an exception it carries is raised."""
    future.wait()
    result = future.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return result


def _first_task(rt: StageRun, stage: str, actions: list[PlanAction]) -> Any:
    definition = _definition(stage)
    assert definition.first is not None
    first = definition.first
    return task_outcome(
        first_label(definition, actions),
        lambda: contained(rt, MANAGEMENT, actions, lambda: first(rt, actions)),
        len(actions),
    )


def _account_task(
    rt: StageRun, stage: str, account_id: str, actions: list[PlanAction], label: str
) -> Any:
    definition = _definition(stage)
    return task_outcome(
        label or account_id,
        lambda: contained(
            rt, account_id, actions, lambda: definition.per_account(rt, account_id, actions)
        ),
        len(actions),
    )


def first_label(definition: StageDefinition, actions: list[PlanAction]) -> str:
    """The UI's name for the stage's first work on these actions."""
    if definition.first_label_for is not None:
        return definition.first_label_for(actions)
    return definition.first_label


def _definition(stage: str) -> StageDefinition:
    from domain import stages as registry

    return registry.stage(stage)


# -- the stage's run ---------------------------------------------------------------------------


def run_accounts(
    rt: StageRun, definition: StageDefinition, actions: list[PlanAction], in_flow: bool
) -> list[AccountReport]:
    """The stage's management work first (if it declares any), then every account, contained.

    Returns:
        One report per account (the management account's first), failed ones included.
    """
    stage = definition.name
    first = [a for a in actions if a.kind in definition.first_kinds]
    grouped: dict[str, list[PlanAction]] = {}
    for action in actions:
        if action.kind not in definition.first_kinds:
            grouped.setdefault(action.account_id or MANAGEMENT, []).append(action)
    accounts = sorted(grouped.items())
    reports: list[AccountReport] = []
    if in_flow:
        if definition.first is not None and first:
            task = prefect_task(_first_task, f"{stage}-management", first_label(definition, first))
            reports.append(settle(task.submit(rt, stage, first)))
        if rt.spread is not None:
            return reports + rt.spread(rt, definition, accounts)
        account_task = prefect_task(_account_task, f"{stage}-account", f"{stage} {{label}}")
        futures = [
            account_task.submit(
                rt,
                stage,
                account_id,
                work,
                account_label(rt.planned_account(account_id)) or account_id,
            )
            for account_id, work in accounts
        ]
        return reports + [settle(future) for future in futures]
    if definition.first is not None and first:
        run_first = definition.first
        reports.append(contained(rt, MANAGEMENT, first, lambda: run_first(rt, first)))

    def one(account_id: str, work: list[PlanAction]) -> AccountReport:
        return contained(rt, account_id, work, lambda: definition.per_account(rt, account_id, work))

    at_once = definition.accounts_at_once
    workers = max(1, min(at_once() if callable(at_once) else at_once, len(accounts)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=stage) as pool:
        futures2 = [pool.submit(one, account_id, work) for account_id, work in accounts]
        return reports + [future.result() for future in futures2]
