"""Runs and their lifecycle: records, stage lease rows, resume rules, status and listing.

A run is one execution of a runbook step (inventory, mapping, plan, apply, rollback, restore).
The store methods here (mixed into ``state.Store``) record runs and the per-(plan, stage) lease
rows that keep two processes from changing the same stage at once; taking, renewing and losing
a lease safely is ``engine.lease``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, insert, select, update
from sqlalchemy.orm import Session

from domain.errors import ApplyRefused, StateError
from state import models as m

if TYPE_CHECKING:
    from state.store import Store

log = logging.getLogger(__name__)

# Run kinds that change AWS through the journal (the others: inventory, mapping, plan).
APPLY_RUN = "apply"
ROLLBACK_RUN = "rollback"
# Journaled as well, but of deleted users rather than of a plan stage (flows.restore).
RESTORE_RUN = "restore"

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
    process: str | None = None


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
                    process=this_process(),
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
            process=row.process,
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
                .values(
                    status=RUN_RUNNING,
                    finished=None,
                    error=None,
                    process=this_process(),
                )
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
            # Ours already, or its holder fell silent (a killed process): take it over. A new
            # holder has not said which run it executes yet: the old holder's run is no longer
            # live (it shows interrupted, so it may be resumed), not "still running".
            values: dict[str, Any] = {"holder": holder, "heartbeat": now, "acquired": now}
            if row.holder != holder:
                values["run_id"] = None
            session.execute(
                update(m.StageLockRow).where(m.StageLockRow.id == row.id).values(**values)
            )
            return None

    def list_stage_locks(self) -> list[StageLockInfo]:
        """Every lease held now (live or lapsed): which run holds which plan stage."""
        with self._session(write=False) as session:  # type: ignore[attr-defined]
            return [_info(row) for row in session.execute(select(m.StageLockRow)).scalars()]

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


# -- the lifecycle: one writer per stage, which run may act, what each run did ------------------


# A run silent for LOCK_STALE_AFTER is presumed dead (killed), and the next apply, resume or
# rollback of that stage may take over (engine.lease renews leases well within it).
LOCK_STALE_AFTER = timedelta(minutes=2)

# What a run is, as an operator reads it. Stored: running, succeeded, failed. Derived on read:
# interrupted (still "running" in the DB, but its process is gone: no live lease, no live pid)
# and superseded (a later run of the same plan stage exists: only the latest run may act).
RUN_INTERRUPTED = "interrupted"
RUN_SUPERSEDED = "superseded"
STAGE_RUN_KINDS = (APPLY_RUN, ROLLBACK_RUN)


def this_process() -> str:
    """``host:pid`` of this process, as recorded on the runs it starts or continues."""
    return f"{socket.gethostname()}:{os.getpid()}"


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


def check_resumable(store: Store, run: RunInfo, spec_path: str | Path = "SPEC") -> None:
    """Refuse to continue a run that may no longer act.

    Raises:
        ApplyRefused: The run succeeded (nothing to resume), is still running, or was
            superseded by a later run of the same plan stage (it would replay a stale view).
    """
    key = _plan_stage(run)
    if key is None:
        raise ApplyRefused(f"run {run.id} is a {run.kind} run: only apply and rollback resume")
    views = view_runs(store.list_runs(run.migration_id), store.list_stage_locks())
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
            for run in store.list_runs(migration_id):
                if run.kind == kind and run.params.get("prefect_flow_run_id") == flow_run_id:
                    resume_run_id = run.id
    if resume_run_id is not None:
        check_resumable(store, store.get_run(resume_run_id), spec_path)
        store.reopen_run(resume_run_id)
        return resume_run_id
    return store.start_run(migration_id, kind, params)
