"""The steps that are not plan stages (verify, key scan, restore, notify): each account contained.

What ``engine.account_work`` does for a plan stage's accounts, for a step's own per-account
work: one account whose role can't be assumed, or whose calls fail, becomes an
:class:`AccountFailure` carrying AWS's reason (``tasks.aws.failure_reason``), its task ends
Failed with that reason as its one message (red in the UI, no traceback), and the other
accounts go on. Only what must stop every account is let through (``STOPS_THE_RUN``, and a
crash: ``BaseException``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.account_work import STOPS_THE_RUN, reason_for

T = TypeVar("T")


@dataclass(frozen=True)
class AccountFailure:
    """One account's work could not be done, and AWS's reason (or ours) why."""

    account_id: str
    label: str  # ``893263693528 acme-prod-app``
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


def contained_account(account_id: str, label: str, work: Callable[[], T]) -> T | AccountFailure:
    """Run one account's work; its failure is returned as an :class:`AccountFailure`.

    Raises:
        ConflictError, LeaseLost, StateError: What no account can contain (the run stops).
    """
    try:
        return work()
    except STOPS_THE_RUN:
        raise
    except Exception as err:
        return AccountFailure(account_id, label or account_id, reason_for(account_id, err))


def account_task_result(account_id: str, label: str, work: Callable[[], Any]) -> Any:
    """Inside an account's Prefect task: its result, or a Failed state naming the account's
    failure (the flow gets the :class:`AccountFailure` back from ``settle``)."""
    from prefect import get_run_logger
    from prefect.states import Failed

    outcome = contained_account(account_id, label, work)
    if isinstance(outcome, AccountFailure):
        get_run_logger().error("%s", outcome)
        return Failed(message=str(outcome), data=outcome)
    return outcome


def failures_text(failures: list[AccountFailure]) -> str:
    """``account A (name) could not be read: reason``, one line each, for a run's message."""
    return "\n  ".join(f"account {f.label}: {f.reason}" for f in failures)


def unprovisioned_accounts(store: Any, plan: Any, plan_id: int) -> dict[str, str]:
    """{account: why} for each account whose provisioning of the plan is not done.

    Why: the failed action's error, else why a provision run recorded the account as failed
    as a whole (its role could not be assumed, ...), else how many actions are still pending.
    """
    from state.journal import DONE_STATUSES

    entries = {e.action_id: e for e in store.journal.journal_entries(plan_id, "provision")}
    left: dict[str, list[str]] = {}
    for action in plan.actions:
        if str(action.stage) != "provision" or not action.account_id:
            continue
        entry = entries.get(action.id)
        if entry is None or entry.status not in DONE_STATUSES:
            left.setdefault(action.account_id, []).append(entry.error if entry else "")
    if not left:
        return {}
    # What the provision runs recorded of each account that failed as a whole.
    said: dict[str, str] = {}
    for run in store.runs.list_runs(store.plans.get_plan(plan_id).migration_id):
        if run.params.get("plan_id") == plan_id and run.params.get("stage") == "provision":
            said.update((run.summary or {}).get("accounts_failed") or {})
    return {
        account_id: next((e for e in errors if e), None)
        or said.get(account_id)
        or f"{len(errors)} provisioning action(s) of this account are not done"
        for account_id, errors in sorted(left.items())
    }
