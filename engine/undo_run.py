"""A rollback's undos driven as the apply drives its work: every account at once, and within an
account up to the outstanding cap, in the stage's undo order.

The journal rows to undo come ranked by the stage's ``undo_order`` (newest first within a
kind). They are cut into phases where they change from rows held by an account to rows of
the instance (the management account's: a provision stage's permission sets) and back: a
phase runs its accounts together, one task each, and the next phase starts when it has
ended. Within an account the kinds go one after another in rank order, each kind's rows on
up to ``ctx.max_outstanding`` threads; a stage whose users keep their own order
(``takes_access_away``: disable) undoes each user's rows of a kind one at a time.

An account whose undo fails stops alone, with AWS's reason (contained as the apply's accounts
are, ``engine.account_work``: an error, not only a FAILED request); the others go on. Inside a
flow each account is a Prefect task named ``rollback <account id> <name>``. What a later
phase would undo that the failed account's remaining rows still depend on (in the plan: an
assignment on its provisioning, the provisioning on its permission set) is left as it is, so
no permission set is deleted while an account still holds its assignments. A resume of the
rollback run continues from the journal.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from domain.errors import ActionError
from engine.account_work import (
    MANAGEMENT,
    STOPS_THE_RUN,
    account_label,
    reason_for,
    settle,
    task_outcome,
)
from engine.executor import Executor
from engine.stage_run import ACCOUNT_CONCURRENCY, AccountReport, prefect_task
from state.journal import FAILED, SUCCEEDED, JournalEntry

log = logging.getLogger(__name__)
# Report statuses of an undo: done, nothing to do (adopted, never made), waiting, not reached.
UNDONE, SKIPPED, BLOCKED, PENDING = "rolled-back", "skipped", "blocked", "pending"
_FINISHED = (UNDONE, SKIPPED)


class UndoScope:
    """One account's rows of a rollback phase (or the management's: rows of no account).

    A plain class, so Prefect neither walks nor hashes it when it is a task's parameter.
    """

    def __init__(self, account_id: str, entries: list[JournalEntry]):
        self.account_id = account_id
        self.entries = entries
        # The account as the plan's inventory saw it, where known (its name, for the UI).
        self.planned: Any = None
        # Rows left as they are: another account's unfinished undo still depends on them.
        self.held: dict[str, list[str]] = {}
        self.report = AccountReport(account_id or MANAGEMENT)

    @property
    def name(self) -> str:
        """The account id, or ``management``."""
        return self.account_id or MANAGEMENT


# (scopes, work) -> each scope's report, in order: threads, or one Prefect task per scope.
ScopeRunner = Callable[[list[UndoScope], Callable[[UndoScope], AccountReport]], list[Any]]


def describe(entry: JournalEntry) -> str:
    """``create-assignment user x -> Readers in 123456789012``: a row as operators read it."""
    target = (entry.intent.get("action") or {}).get("target", entry.action_id)
    where = f" in {entry.account_id}" if entry.account_id else ""
    return f"{entry.kind} {target}{where}"


def undo_phases(undo: list[JournalEntry]) -> list[list[UndoScope]]:
    """The ranked rows cut where they pass between accounts' rows and the instance's, each
    phase's rows grouped by account (each keeps the rank order)."""
    phases: list[list[JournalEntry]] = []
    for entry in undo:
        if phases and bool(phases[-1][-1].account_id) == bool(entry.account_id):
            phases[-1].append(entry)
        else:
            phases.append([entry])
    cut = []
    for phase in phases:
        grouped: dict[str, list[JournalEntry]] = {}
        for entry in phase:
            grouped.setdefault(entry.account_id or "", []).append(entry)
        cut.append([UndoScope(account, rows) for account, rows in sorted(grouped.items())])
    return cut


def in_threads(
    scopes: list[UndoScope], work: Callable[[UndoScope], AccountReport]
) -> list[AccountReport]:
    """Every scope at once on threads, as the apply runs its accounts outside a flow."""
    if len(scopes) == 1:
        return [work(scopes[0])]
    workers = max(1, min(ACCOUNT_CONCURRENCY, len(scopes)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rollback") as pool:
        futures = [pool.submit(work, scope) for scope in scopes]
        return [future.result() for future in futures]


def as_tasks(scopes: list[UndoScope], work: Callable[[UndoScope], AccountReport]) -> list[Any]:
    """Every scope at once as a Prefect task, named as the apply names its own."""
    undo_task = prefect_task(_scope_task, "rollback-account", "rollback {label}")
    futures = [
        undo_task.submit(scope, work, account_label(scope.planned) or scope.name)
        for scope in scopes
    ]
    return [settle(future) for future in futures]


def _scope_task(scope: UndoScope, work: Callable[[UndoScope], AccountReport], label: str) -> Any:
    """One account's undo as a task: Failed (one message, no traceback) when it failed."""
    return task_outcome(label, lambda: work(scope), len(scope.entries))


def undo_everything(
    executor: Executor,
    undo: list[JournalEntry],
    depends_on: dict[str, list[str]],
    *,
    user_order: bool,
    in_flow: bool = False,
    planned: Callable[[str], Any] | None = None,
) -> list[AccountReport]:
    """Undo the ranked rows phase by phase, each phase's accounts together.

    Args:
        executor: The rollback run's journaled executor.
        undo: The rows to undo, in the stage's undo order.
        depends_on: The plan's action id -> the action ids it depends on.
        user_order: Undo each user's rows of a kind one at a time (a user-scoped stage).
        in_flow: Each account a Prefect task (inside ``rollback_flow``); else threads.
        planned: account id -> the account as the plan saw it (for the tasks' names).

    Returns:
        One report per scope of every phase run.
    """
    runner: ScopeRunner = as_tasks if in_flow else in_threads
    work = functools.partial(contained_undo, executor, user_order=user_order)
    reports: list[AccountReport] = []
    unfinished: list[JournalEntry] = []
    for scopes in undo_phases(undo):
        waits = _still_needed(unfinished, depends_on)
        for scope in scopes:
            scope.held = {
                e.action_id: waits[e.action_id] for e in scope.entries if e.action_id in waits
            }
            if planned is not None and scope.account_id:
                scope.planned = planned(scope.account_id)
        executor.check_alive()
        reports.extend(runner(scopes, work))
        unfinished.extend(
            entry
            for scope in scopes
            for entry in scope.entries
            if scope.report.statuses.get(entry.action_id) not in _FINISHED
        )
    return reports


def _still_needed(
    unfinished: list[JournalEntry], depends_on: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Action id -> the accounts whose unfinished rows depend on it (transitively)."""
    needed: dict[str, set[str]] = {}
    for entry in unfinished:
        account = entry.account_id or MANAGEMENT
        stack = list(depends_on.get(entry.action_id, ()))
        seen: set[str] = set()
        while stack:
            action_id = stack.pop()
            if action_id in seen:
                continue
            seen.add(action_id)
            needed.setdefault(action_id, set()).add(account)
            stack.extend(depends_on.get(action_id, ()))
    return {action_id: sorted(accounts) for action_id, accounts in needed.items()}


def contained_undo(executor: Executor, scope: UndoScope, *, user_order: bool) -> AccountReport:
    """:func:`undo_scope`, contained: an error in this account (its role can't be assumed, a
    call fails) ends its report with the reason, not the run; its rows not undone stay."""
    try:
        return undo_scope(executor, scope, user_order=user_order)
    except STOPS_THE_RUN:
        raise
    except Exception as err:
        reason = reason_for(scope.account_id, err)
        log.warning("rollback of %s failed: %s", scope.name, reason)
        scope.report.failure = reason
        scope.report.errors.append(f"the undo stopped: {reason}")
        return scope.report


def undo_scope(executor: Executor, scope: UndoScope, *, user_order: bool) -> AccountReport:
    """Undo one account's rows: kind after kind in rank order, each kind's rows together.

    The first undo that fails stops the account's rows not yet started (those in flight end
    and are journaled); its reason is in the report. Rows another account's unfinished undo
    still needs are left as they are, and said so.
    """
    report = scope.report
    for entry in scope.entries:
        report.statuses[entry.action_id] = PENDING
    for action_id in scope.held:
        report.statuses[action_id] = BLOCKED
    if scope.held:
        waited = sorted({a for accounts in scope.held.values() for a in accounts})
        report.errors.append(
            f"{len(scope.held)} undo(s) left as they are until the undo in account(s) "
            f"{', '.join(waited)} finishes (it still uses what they would remove)"
        )
    rows = [e for e in scope.entries if e.action_id not in scope.held]
    for kind_rows in _runs_of_one_kind(rows):
        if not _undo_together(executor, scope, kind_rows, user_order):
            break
    return report


def _runs_of_one_kind(rows: list[JournalEntry]) -> list[list[JournalEntry]]:
    runs: list[list[JournalEntry]] = []
    for entry in rows:
        if runs and runs[-1][-1].kind == entry.kind:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _undo_together(
    executor: Executor, scope: UndoScope, rows: list[JournalEntry], user_order: bool
) -> bool:
    """Undo rows of one kind on up to ``max_outstanding`` threads; False when one failed.

    Each lane keeps its order: one user's rows (``user_order``), or one row each.
    """
    lanes: dict[str, list[JournalEntry]] = {}
    for entry in rows:
        target = (entry.intent.get("action") or {}).get("target", "")
        lanes.setdefault(target if user_order else entry.action_id, []).append(entry)
    stop = threading.Event()
    report = scope.report

    def lane(entries: list[JournalEntry]) -> None:
        for entry in entries:
            if stop.is_set():
                return
            try:
                status = executor.undo(entry)
            except ActionError as err:
                report.statuses[entry.action_id] = FAILED
                reason = str(err).removeprefix(f"{entry.action_id}: ")
                report.errors.append(f"undo of {describe(entry)} failed: {reason}")
                stop.set()
                return
            except BaseException:
                stop.set()  # the account stops (contained above) or the run does
                raise
            report.statuses[entry.action_id] = UNDONE if status == SUCCEEDED else SKIPPED

    work = list(lanes.values())
    if len(work) == 1:
        lane(work[0])
        return not stop.is_set()
    workers = max(1, min(executor.ctx.max_outstanding, len(work)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"undo-{scope.name}") as pool:
        for future in [pool.submit(lane, entries) for entries in work]:
            future.result()
    return not stop.is_set()
