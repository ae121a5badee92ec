"""Run rules: which run may act, what a run did, and what to run next, for the CLI and the UI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.errors import ApplyRefused
from domain.plan import Plan
from engine.migration import Migration
from state.journal import ADOPTED, DONE_STATUSES, FAILED, ROLLBACK_PREFIX, ROLLED_BACK
from state.runs import (
    RESTORE_RUN,
    ROLLBACK_RUN,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_SUPERSEDED,
    STAGE_RUN_KINDS,
    RunView,
    view_runs,
)


def next_step(view: RunView, hint: Callable[[str], str]) -> str | None:
    """The command that continues or follows a run, for the CLI and the UI alike.

    Args:
        hint: Makes an ``iamc`` command line of the migration (:meth:`Migration.hint`).
    """
    run = view.run
    if run.kind == RESTORE_RUN and view.status in (RUN_FAILED, RUN_INTERRUPTED):
        # A restore is journaled too: a resume finishes it without creating anything twice.
        return hint(f"resume {run.id}")
    if run.kind not in STAGE_RUN_KINDS:
        return None
    if view.status in (RUN_FAILED, RUN_INTERRUPTED):
        return hint(f"resume {run.id}")
    if view.status == RUN_SUPERSEDED:
        return f"{hint(f'status {view.superseded_by}')} (the run that superseded it)"
    return None


def _count(row: dict[str, Any], status: str, error: str | None, target: str) -> None:
    if status == FAILED:
        row["failed"] += 1
        row["errors"].append(f"{target}: {error or ''}")
    elif status == ADOPTED:
        row["adopted"] += 1
    elif status in DONE_STATUSES:
        row["done"] += 1
    elif status == ROLLED_BACK:
        row["rolled_back"] += 1
    else:
        row["pending"] += 1


def _empty_row() -> dict[str, Any]:
    return {"done": 0, "adopted": 0, "pending": 0, "failed": 0, "rolled_back": 0, "errors": []}


def run_status(mig: Migration, run_id: int) -> dict[str, Any]:
    """What one run did, per account, and where its plan stage stands now.

    ``accounts`` counts only this run's own outcomes (from its journal events): for an apply
    run, actions it did (``done``), found already there (``adopted``) or that failed; for a
    rollback run, actions it undid (``rolled_back``). ``stage`` is the stage's current state
    from the journal, whichever run did the work: done, adopted, pending, failed, rolled back.

    Returns:
        ``{"run": {...}, "accounts": {...}, "stage": {...}}``; the management account's
        permission sets are under ``"management"``.
    """
    spec, store = mig.spec, mig.store
    run = store.get_run(run_id)
    if run.migration != spec.name or run.kind not in STAGE_RUN_KINDS:
        raise ApplyRefused(f"run {run_id} is not an apply or rollback run of {spec.name!r}")
    plan_id, stage = int(run.params["plan_id"]), str(run.params["stage"])
    info = store.get_plan(plan_id)
    if info is None or info.migration != spec.name:
        raise ApplyRefused(f"no plan {plan_id} in migration {spec.name!r}")
    entries = {e.action_id: e for e in store.journal_entries(plan_id, stage)}
    events = store.journal_events(run_id)
    view = view_runs(store.list_runs(run.migration_id), store.list_stage_locks())[run_id]
    plan = Plan.from_content(info.content)
    rollback = run.kind == ROLLBACK_RUN
    targets = {a.id: (a.account_id or "management", a.target) for a in plan.actions}
    stage_rows: dict[str, dict[str, Any]] = {}
    for action in plan.actions:
        if action.stage != stage:
            continue
        forward = entries.get(action.id)
        status = forward.status if forward else "pending"
        _count(
            stage_rows.setdefault(action.account_id or "management", _empty_row()),
            status,
            forward.error if forward else None,
            action.target,
        )
    # Users this run's live preconditions refused: pending, and why (iamc status, the UI table).
    for refused in (run.summary or {}).get("refused") or []:
        row = stage_rows.setdefault(refused["account_id"], _empty_row())
        row["refused"] = row.get("refused", 0) + 1
        row["errors"].append(f"{refused['user']}: refused: {refused['reason']}")
    # The run's own outcomes: the last event of each action in this run.
    last: dict[str, Any] = {}
    for event in events:
        last[event.action_id] = event
    accounts: dict[str, dict[str, Any]] = {}
    for action_id, event in last.items():
        forward_id = action_id.removeprefix(ROLLBACK_PREFIX)
        account, target = targets.get(forward_id, (event.account_id or "management", forward_id))
        row = accounts.setdefault(account, _empty_row())
        status = event.status
        if rollback and action_id.startswith(ROLLBACK_PREFIX) and status in DONE_STATUSES:
            status = ROLLED_BACK
        _count(row, status, event.error, target)
    return {
        "run": {
            "id": run.id,
            "kind": run.kind,
            "status": view.status,
            "superseded_by": view.superseded_by,
            "next": next_step(view, mig.hint),
            "plan_id": plan_id,
            "wave": info.wave,
            "stage": stage,
            "started": run.started.isoformat(),
            "finished": run.finished.isoformat() if run.finished else None,
            "error": run.error,
        },
        "accounts": dict(sorted(accounts.items())),
        "stage": dict(sorted(stage_rows.items())),
    }


def list_runs(mig: Migration) -> list[dict[str, Any]]:
    """The migration's runs, oldest first, with their lifecycle status and next step."""
    store = mig.store
    migration_id = store.find_migration(mig.spec.name)
    runs = [] if migration_id is None else store.list_runs(migration_id)
    views = view_runs(runs, store.list_stage_locks())
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "status": views[r.id].status,
            "superseded_by": views[r.id].superseded_by,
            "started": r.started.isoformat(timespec="seconds"),
            "finished": r.finished.isoformat(timespec="seconds") if r.finished else None,
            "plan_id": r.params.get("plan_id"),
            "stage": r.params.get("stage"),
            "error": (r.error or "").splitlines()[0] if r.error else None,
            "next": next_step(views[r.id], mig.hint),
        }
        for r in runs
    ]
