"""Runs and their lifecycle: records, stage leases, resume rules, status and listing.

A run is one execution of a runbook step (inventory, mapping, plan, apply, rollback). The
store methods here (mixed into ``state.Store``) record runs and the per-(plan, stage) lease
that keeps two processes from changing the same stage at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.orm import Session

from domain.errors import ApplyRefused, StateError
from domain.plan import Plan
from domain.spec import load_spec
from state import models as m
from state.journal import ADOPTED, DONE_STATUSES, FAILED, ROLLBACK_PREFIX, ROLLED_BACK

if TYPE_CHECKING:
    from state.store import Store

log = logging.getLogger(__name__)

# Run kinds that change AWS through the journal (the others: inventory, mapping, plan).
APPLY_RUN = "apply"
ROLLBACK_RUN = "rollback"

RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
FINISHED_RUN_STATUSES = frozenset({RUN_SUCCEEDED, RUN_FAILED})


@dataclass(frozen=True)
class RunInfo:
    """A run as recorded: ``migration`` is the migration's name, ``migration_id`` its id."""

    id: int
    migration: str
    kind: str
    status: str
    started: datetime
    finished: datetime | None
    params: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    migration_id: int


def _now() -> datetime:
    return datetime.now(UTC)


class RunsMixin:
    """Run records (mixed into ``state.Store``); each call is its own transaction."""

    if TYPE_CHECKING:
        _masked_url: str

        def _session(self, *, write: bool) -> AbstractContextManager[Session]: ...

        def _retrying_on_conflict(self, work: Callable[[Session], Any]) -> Any: ...

    def start_run(self, migration_id: int, kind: str, params: dict[str, Any] | None = None) -> int:
        """Record that a run of ``kind`` (e.g. ``"inventory"``) has started.

        Args:
            migration_id: From :meth:`ensure_migration`.
            kind: What the run does.
            params: Its parameters, as JSON-compatible data.

        Returns:
            The run's id.

        Raises:
            StateError: The migration doesn't exist or the DB can't be written.
        """
        with self._session(write=True) as session:
            return session.execute(
                insert(m.Run)
                .values(
                    migration_id=migration_id,
                    kind=kind,
                    status=RUN_RUNNING,
                    started=_now(),
                    params=params or {},
                )
                .returning(m.Run.id)
            ).scalar_one()

    def finish_run(
        self,
        run_id: int,
        status: str,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a run ended.

        Args:
            run_id: From :meth:`start_run`.
            status: ``"succeeded"`` or ``"failed"``.
            summary: What it did, as JSON-compatible data.
            error: Why it failed.

        Raises:
            ValueError: ``status`` is not a finished status.
            StateError: No such run, or the DB can't be written.
        """
        if status not in FINISHED_RUN_STATUSES:
            raise ValueError(
                f"run status must be one of {', '.join(sorted(FINISHED_RUN_STATUSES))}, "
                f"not {status!r}"
            )
        with self._session(write=True) as session:
            result = session.execute(
                update(m.Run)
                .where(m.Run.id == run_id)
                .values(status=status, finished=_now(), summary=summary, error=error)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StateError(f"state DB {self._masked_url} has no run {run_id}")

    def _runs_query(self) -> Select[Any]:
        return select(m.Run.__table__, m.Migration.name.label("migration_name")).join(
            m.Migration, m.Migration.id == m.Run.migration_id
        )

    @staticmethod
    def _run_info(row: Any) -> RunInfo:
        return RunInfo(
            id=row.id,
            migration=row.migration_name,
            kind=row.kind,
            status=row.status,
            started=row.started,
            finished=row.finished,
            params=row.params or {},
            summary=row.summary,
            error=row.error,
            migration_id=row.migration_id,
        )

    def get_run(self, run_id: int) -> RunInfo:
        """Return one run.

        Args:
            run_id: From :meth:`start_run`.

        Returns:
            The run as recorded.

        Raises:
            StateError: No such run.
        """
        with self._session(write=False) as session:
            row = session.execute(self._runs_query().where(m.Run.id == run_id)).one_or_none()
        if row is None:
            raise StateError(f"state DB {self._masked_url} has no run {run_id}")
        return self._run_info(row)

    def list_runs(self, migration_id: int | None = None) -> list[RunInfo]:
        """Return runs, oldest first.

        Args:
            migration_id: Only this migration's runs; all runs if None.

        Returns:
            The runs.
        """
        query = self._runs_query().order_by(m.Run.id)
        if migration_id is not None:
            query = query.where(m.Run.migration_id == migration_id)
        with self._session(write=False) as session:
            return [self._run_info(row) for row in session.execute(query)]

    def reopen_run(self, run_id: int) -> None:
        """Mark a finished run running again: a resume or a retried flow run continues it."""
        with self._session(write=True) as session:
            result = session.execute(
                update(m.Run)
                .where(m.Run.id == run_id)
                .values(status="running", finished=None, error=None)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StateError(f"state DB {self._masked_url} has no run {run_id}")


# -- stage locks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageLockInfo:
    plan_id: int
    stage: str
    holder: str
    run_id: int | None
    acquired: datetime
    heartbeat: datetime


def _info(row: m.StageLockRow) -> StageLockInfo:
    return StageLockInfo(
        plan_id=row.plan_id,
        stage=row.stage,
        holder=row.holder,
        run_id=row.run_id,
        acquired=row.acquired,
        heartbeat=row.heartbeat,
    )


class StageLockMixin:
    """A lease per (plan, stage): taken in one transaction with the plan row locked, renewed by
    a heartbeat, released at the end; a holder silent for ``stale_after`` is presumed dead."""

    def acquire_stage_lock(
        self,
        plan_id: int,
        stage: str,
        holder: str,
        *,
        stale_after: timedelta,
        now: datetime | None = None,
    ) -> StageLockInfo | None:
        """Take the lock, or renew it if ``holder`` already has it.

        Returns:
            None when ``holder`` now holds it; otherwise the live lock of someone else.
        """
        now = now or datetime.now(UTC)
        with self._session(write=True) as session:  # type: ignore[attr-defined]
            session.execute(
                select(m.PlanRow.id).where(m.PlanRow.id == plan_id).with_for_update()
            ).scalar_one()
            row = session.execute(
                select(m.StageLockRow).where(
                    m.StageLockRow.plan_id == plan_id, m.StageLockRow.stage == stage
                )
            ).scalar_one_or_none()
            if row is None:
                session.execute(
                    insert(m.StageLockRow).values(
                        plan_id=plan_id, stage=stage, holder=holder, acquired=now, heartbeat=now
                    )
                )
                return None
            if row.holder != holder and now - row.heartbeat < stale_after:
                return _info(row)
            # Ours already, or its holder fell silent (a killed process): take it over.
            session.execute(
                update(m.StageLockRow)
                .where(m.StageLockRow.id == row.id)
                .values(holder=holder, heartbeat=now, acquired=now)
            )
            return None

    def stage_lock_run(self, plan_id: int, stage: str, holder: str, run_id: int) -> None:
        """Record which run the holder is executing (shown to anyone refused)."""
        with self._session(write=True) as session:  # type: ignore[attr-defined]
            session.execute(
                update(m.StageLockRow)
                .where(
                    m.StageLockRow.plan_id == plan_id,
                    m.StageLockRow.stage == stage,
                    m.StageLockRow.holder == holder,
                )
                .values(run_id=run_id)
            )

    def heartbeat_stage_lock(self, plan_id: int, stage: str, holder: str) -> bool:
        """Renew the lease; False if someone took it over (we were presumed dead)."""
        with self._session(write=True) as session:  # type: ignore[attr-defined]
            result = session.execute(
                update(m.StageLockRow)
                .where(
                    m.StageLockRow.plan_id == plan_id,
                    m.StageLockRow.stage == stage,
                    m.StageLockRow.holder == holder,
                )
                .values(heartbeat=datetime.now(UTC))
            )
            return bool(result.rowcount)

    def release_stage_lock(self, plan_id: int, stage: str, holder: str) -> None:
        with self._session(write=True) as session:  # type: ignore[attr-defined]
            session.execute(
                delete(m.StageLockRow).where(
                    m.StageLockRow.plan_id == plan_id,
                    m.StageLockRow.stage == stage,
                    m.StageLockRow.holder == holder,
                )
            )


# -- the lifecycle: one writer per stage, which run continues, what each run did ---------------


# A run renews its lock this often; one silent for LOCK_STALE_AFTER is presumed dead (killed),
# and the next apply, resume or rollback of that stage may take over.
LOCK_HEARTBEAT_SECONDS = 15.0
LOCK_STALE_AFTER = timedelta(minutes=2)


@contextmanager
def stage_lease(store: Store, plan_id: int, stage: str) -> Iterator[str]:
    """Hold the (plan, stage) lock: two processes never change the same stage at once.

    Without it, `iamc resume` and a Retry pressed in the UI (or two operators) could send the
    same creations twice. The lock is a lease renewed by a heartbeat thread.

    Raises:
        ApplyRefused: Another live process holds it.
    """
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    blocker = store.acquire_stage_lock(plan_id, stage, holder, stale_after=LOCK_STALE_AFTER)
    if blocker is not None:
        age = (datetime.now(UTC) - blocker.heartbeat).total_seconds()
        raise ApplyRefused(
            f"plan {plan_id} stage {stage} is being changed by run {blocker.run_id} "
            f"({blocker.holder}, last seen {age:.0f} s ago); nothing was changed. Wait for it "
            f"to finish; if that process is gone, try again after "
            f"{LOCK_STALE_AFTER.total_seconds():.0f} s of silence"
        )
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(LOCK_HEARTBEAT_SECONDS):
            if not store.heartbeat_stage_lock(plan_id, stage, holder):
                log.error("lost the lock on plan %s stage %s", plan_id, stage)
                return

    beating = threading.Thread(target=heartbeat, name="iamc-stage-lock", daemon=True)
    beating.start()
    try:
        yield holder
    finally:
        stop.set()
        beating.join(timeout=5)
        store.release_stage_lock(plan_id, stage, holder)


def open_run(
    store: Store,
    migration_id: int,
    kind: str,
    params: dict[str, Any],
    resume_run_id: int | None,
) -> int:
    """The run to record steps under: the one resumed, the one this Prefect flow run already
    started (a Retry runs the flow again from the top), or a new one."""
    if resume_run_id is not None:
        store.reopen_run(resume_run_id)
        return resume_run_id
    flow_run_id = params.get("prefect_flow_run_id")
    if flow_run_id:
        for run in store.list_runs(migration_id):
            if run.kind == kind and run.params.get("prefect_flow_run_id") == flow_run_id:
                store.reopen_run(run.id)
                return run.id
    return store.start_run(migration_id, kind, params)


def run_status(spec_path: str | Path, run_id: int) -> dict[str, Any]:
    """Per account: done, pending and failed actions of a run's plan stage, with errors.

    Returns:
        ``{"run": {...}, "accounts": {account: {"done", "pending", "failed", "errors"}}}``;
        the management account's permission sets are under ``"management"``.
    """
    from state.store import Store  # this module is mixed into Store

    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        run = store.get_run(run_id)
        if run.migration != spec.name or run.kind not in (APPLY_RUN, ROLLBACK_RUN):
            raise ApplyRefused(f"run {run_id} is not an apply or rollback run of {spec.name!r}")
        plan_id, stage = int(run.params["plan_id"]), str(run.params["stage"])
        info = store.get_plan(plan_id)
        if info is None or info.migration != spec.name:
            raise ApplyRefused(f"no plan {plan_id} in migration {spec.name!r}")
        entries = {e.action_id: e for e in store.journal_entries(plan_id, stage)}
    plan = Plan.from_content(info.content)
    accounts: dict[str, dict[str, Any]] = {}
    rollback = run.kind == ROLLBACK_RUN
    for action in plan.actions:
        if action.stage != stage:
            continue
        key = action.account_id or "management"
        row = accounts.setdefault(
            key,
            {"done": 0, "pending": 0, "failed": 0, "adopted": 0, "rolled_back": 0, "errors": []},
        )
        entry = entries.get(ROLLBACK_PREFIX + action.id) if rollback else entries.get(action.id)
        forward = entries.get(action.id)
        if rollback and forward is not None and forward.status == ADOPTED:
            row["adopted"] += 1
            continue
        status = entry.status if entry else "pending"
        if status == FAILED:
            row["failed"] += 1
            row["errors"].append(f"{action.target}: {entry.error if entry else ''}")
        elif status in DONE_STATUSES:
            row["done"] += 1
            row["adopted"] += status == ADOPTED
        elif status == ROLLED_BACK:
            row["rolled_back"] += 1
        else:
            row["pending"] += 1
    return {
        "run": {
            "id": run.id,
            "kind": run.kind,
            "status": run.status,
            "plan_id": plan_id,
            "stage": stage,
            "started": run.started.isoformat(),
            "finished": run.finished.isoformat() if run.finished else None,
            "error": run.error,
        },
        "accounts": dict(sorted(accounts.items())),
    }


def list_runs(spec_path: str | Path) -> list[dict[str, Any]]:
    """The migration's runs, oldest first, with plan and stage for apply and rollback runs."""
    from state.store import Store  # this module is mixed into Store

    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        migration_id = store.find_migration(spec.name)
        runs = [] if migration_id is None else store.list_runs(migration_id)
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "status": r.status,
            "started": r.started.isoformat(timespec="seconds"),
            "finished": r.finished.isoformat(timespec="seconds") if r.finished else None,
            "plan_id": r.params.get("plan_id"),
            "stage": r.params.get("stage"),
            "error": (r.error or "").splitlines()[0] if r.error else None,
        }
        for r in runs
    ]
