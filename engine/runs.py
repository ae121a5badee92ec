"""Run rules: the lifecycle (interrupted, superseded), which run may act, what a run did, and
what to run next, for the CLI and the UI alike. The run and lease rows are ``state.runs``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain.errors import ApplyRefused
from domain.plan import Plan
from domain.progress import emit
from domain.runs import (
    RESTORE_RUN,
    ROLLBACK_RUN,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_SUPERSEDED,
    STAGE_RUN_KINDS,
    RunInfo,
    StageLockInfo,
)
from engine.migration import Migration
from state.journal import ADOPTED, DONE_STATUSES, FAILED, ROLLBACK_PREFIX, ROLLED_BACK
from state.store import Store

# A run silent for LOCK_STALE_AFTER is presumed dead (killed), and the next apply, resume or
# rollback of that stage may take over (engine.lease renews leases well within it).
LOCK_STALE_AFTER = timedelta(minutes=2)
# What a ``run-opened`` event carries of the run's parameters.
RUN_NAMED_BY = ("plan_id", "stage", "of_run", "user")


def process_alive(process: str | None) -> bool | None:
    """True/False for a process on this host; None when it ran elsewhere (can't tell)."""
    if not process or ":" not in process:
        return None
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet (or orphaned where nothing reaps) is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"])


def holder_process(holder: str) -> str:
    """``host:pid`` of a stage-lock holder (``host:pid:nonce``)."""
    return holder.rsplit(":", 1)[0]


def _plan_stage(run: RunInfo) -> tuple[int, str] | None:
    if run.kind not in STAGE_RUN_KINDS or "plan_id" not in run.params:
        return None
    return int(run.params["plan_id"]), str(run.params.get("stage", ""))


@dataclass(frozen=True)
class RunView:
    """A run as an operator reads it: its lifecycle status and, if any, the run after it."""

    run: RunInfo
    status: str
    superseded_by: int | None = None
    lease_frees: datetime | None = None


def view_runs(
    runs: list[RunInfo], locks: list[StageLockInfo], now: datetime | None = None
) -> dict[int, RunView]:
    """Each run's lifecycle status, from the runs, the stage leases and this host's processes.

    Only the latest run of a (plan, stage) may act; an earlier one that did not succeed is
    superseded. A run still marked running whose lease lapsed (or whose process on this host is
    gone) was interrupted: its process was killed or the machine went away.
    """
    now = now or datetime.now(UTC)
    latest: dict[tuple[int, str], int] = {}
    for run in runs:
        key = _plan_stage(run)
        if key is not None:
            latest[key] = max(latest.get(key, 0), run.id)
    live_lease = {
        lock.run_id: lock.heartbeat + LOCK_STALE_AFTER
        for lock in locks
        if lock.run_id is not None
        and now - lock.heartbeat < LOCK_STALE_AFTER
        and process_alive(holder_process(lock.holder)) is not False
    }
    views: dict[int, RunView] = {}
    for run in runs:
        key = _plan_stage(run)
        later = latest.get(key) if key is not None else None
        superseded_by = later if later is not None and later > run.id else None
        status = run.status
        if status == RUN_RUNNING:
            if key is not None:
                alive = run.id in live_lease
            else:
                alive = process_alive(run.process) is not False
            if not alive:
                status = RUN_INTERRUPTED
        if superseded_by is not None and status != RUN_SUCCEEDED:
            status = RUN_SUPERSEDED
        views[run.id] = RunView(run, status, superseded_by, live_lease.get(run.id))
    return views


def _add_reasons(stage_rows: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    """Why accounts and users the run left pending are pending (iamc status, the UI table):
    users its live preconditions refused, accounts refused or failed as a whole."""
    for refused in summary.get("refused") or []:
        row = stage_rows.setdefault(refused["account_id"], _empty_row())
        row["refused"] = row.get("refused", 0) + 1
        row["refusals"].append(f"{refused['user']}: refused: {refused['reason']}")
    for account, reason in (summary.get("accounts_refused") or {}).items():
        row = stage_rows.setdefault(account, _empty_row())
        row["refusals"].insert(0, f"account refused: {reason}")
    for account, reason in (summary.get("accounts_failed") or {}).items():
        row = stage_rows.setdefault(account, _empty_row())
        row["account_failed"] = reason
        row["errors"].insert(0, f"account failed: {reason.removeprefix(f'account {account}: ')}")


def check_resumable(store: Store, run: RunInfo, spec_path: str | Path = "SPEC") -> None:
    """Refuse to continue a run that may no longer act.

    Raises:
        ApplyRefused: The run succeeded (nothing to resume), is still running, or was
            superseded by a later run of the same plan stage (it would replay a stale view).
    """
    key = _plan_stage(run)
    if key is None:
        raise ApplyRefused(f"run {run.id} is a {run.kind} run: only apply and rollback resume")
    views = view_runs(store.runs.list_runs(run.migration_id), store.leases.list_stage_locks())
    view = views[run.id]
    plan_id, stage = key
    if view.superseded_by is not None:
        later = views[view.superseded_by]
        raise ApplyRefused(
            f"run {run.id} was superseded by run {later.run.id} ({later.run.kind} of plan "
            f"{plan_id} stage {stage}, {later.status}): only the latest run of a stage may act, "
            f"so run {run.id} will not resume; nothing was changed. See 'iamc status "
            f"{later.run.id} -c {spec_path}'"
        )
    if view.status == RUN_SUCCEEDED:
        raise ApplyRefused(
            f"run {run.id} succeeded: there is nothing to resume; nothing was changed"
        )
    if view.status == RUN_RUNNING:
        raise ApplyRefused(
            f"run {run.id} is still running ({run.process or 'another process'});"
            " nothing was changed"
        )


def open_run(
    store: Store,
    migration_id: int,
    kind: str,
    params: dict[str, Any],
    resume_run_id: int | None,
    spec_path: str | Path = "SPEC",
) -> int:
    """The run to record steps under: the one resumed, the one this Prefect flow run already
    started (a Retry runs the flow again from the top), or a new one.

    Call it holding the stage lease, so no other run of the stage starts meanwhile.

    Raises:
        ApplyRefused: The run to continue was superseded or has finished (``check_resumable``).
    """
    if resume_run_id is None:
        flow_run_id = params.get("prefect_flow_run_id")
        if flow_run_id:
            for run in store.runs.list_runs(migration_id):
                if run.kind == kind and run.params.get("prefect_flow_run_id") == flow_run_id:
                    resume_run_id = run.id
    if resume_run_id is not None:
        check_resumable(store, store.runs.get_run(resume_run_id), spec_path)
        store.runs.reopen_run(resume_run_id)
        run_id = resume_run_id
    else:
        run_id = store.runs.start_run(migration_id, kind, params)
    # The UI names the flow run after it (console.run_names): "apply provision · plan 1 · run 11".
    emit("run-opened", run_id=run_id, kind=kind, **{k: params.get(k) for k in RUN_NAMED_BY})
    return run_id


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
    # refusals: what the live checks left as it was (not AWS's errors); errors: what failed.
    return {
        "done": 0,
        "adopted": 0,
        "pending": 0,
        "failed": 0,
        "rolled_back": 0,
        "refusals": [],
        "errors": [],
    }


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
    run = store.runs.get_run(run_id)
    if run.migration != spec.name or run.kind not in STAGE_RUN_KINDS:
        raise ApplyRefused(f"run {run_id} is not an apply or rollback run of {spec.name!r}")
    plan_id, stage = int(run.params["plan_id"]), str(run.params["stage"])
    info = store.plans.get_plan(plan_id)
    if info is None or info.migration != spec.name:
        raise ApplyRefused(f"no plan {plan_id} in migration {spec.name!r}")
    entries = {e.action_id: e for e in store.journal.journal_entries(plan_id, stage)}
    events = store.journal.journal_events(run_id)
    view = view_runs(store.runs.list_runs(run.migration_id), store.leases.list_stage_locks())[
        run_id
    ]
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
    _add_reasons(stage_rows, run.summary or {})
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
    migration_id = store.migrations.find_migration(mig.spec.name)
    runs = [] if migration_id is None else store.runs.list_runs(migration_id)
    views = view_runs(runs, store.leases.list_stage_locks())
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
