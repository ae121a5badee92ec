"""Run and stage-lease rows: recording runs, and the per-(plan, stage) lease rows.

The lease rows keep two processes from changing the same stage at once; taking, renewing and
losing a lease safely is ``engine.lease``, and the run lifecycle (interrupted, superseded,
which run may act) is ``engine.runs``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, insert, or_, select, update

from domain.errors import StateError
from domain.runs import (
    FINISHED_RUN_STATUSES,
    RUN_RUNNING,
    RunInfo,
    StageLockInfo,
    this_process,
)
from state import models as m
from state.session import Sessions, db_now

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class RunRepository:
    """Run records (mixed into ``state.Store``); each call is its own transaction."""

    def __init__(self, db: Sessions):
        self._db = db

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
        with self._db.session(write=True) as session:
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
    ) -> bool:
        """Record how a run ended, unless another process continues it now.

        A compare-and-set on the run's process: a process that lost the run (presumed dead,
        its lease taken over, and the run resumed by another worker, which ``reopen_run``
        stamped) does not overwrite the status the run has now.

        Args:
            run_id: From :meth:`start_run`.
            status: ``"succeeded"`` or ``"failed"``.
            summary: What it did, as JSON-compatible data.
            error: Why it failed.

        Returns:
            True when recorded; False when another process continues the run (left as is).

        Raises:
            ValueError: ``status`` is not a finished status.
            StateError: No such run, or the DB can't be written.
        """
        if status not in FINISHED_RUN_STATUSES:
            raise ValueError(
                f"run status must be one of {', '.join(sorted(FINISHED_RUN_STATUSES))}, "
                f"not {status!r}"
            )
        me = this_process()
        with self._db.session(write=True) as session:
            result = session.execute(
                update(m.Run)
                .where(m.Run.id == run_id, or_(m.Run.process.is_(None), m.Run.process == me))
                .values(status=status, finished=_now(), summary=summary, error=error)
            )
            if result.rowcount:  # type: ignore[attr-defined]
                return True
            owner = session.execute(select(m.Run.process).where(m.Run.id == run_id)).one_or_none()
        if owner is None:
            raise StateError(f"state DB {self._db.masked_url} has no run {run_id}")
        log.warning(
            "run %s is continued by %s now: its %s status is theirs to record, not %s's",
            run_id,
            owner.process,
            status,
            me,
        )
        return False

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
        with self._db.session(write=False) as session:
            row = session.execute(self._runs_query().where(m.Run.id == run_id)).one_or_none()
        if row is None:
            raise StateError(f"state DB {self._db.masked_url} has no run {run_id}")
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
        with self._db.session(write=False) as session:
            return [self._run_info(row) for row in session.execute(query)]

    def reopen_run(self, run_id: int) -> None:
        """Mark a finished run running again: a resume or a retried flow run continues it."""
        with self._db.session(write=True) as session:
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
                raise StateError(f"state DB {self._db.masked_url} has no run {run_id}")


# -- stage locks ---------------------------------------------------------------------------------


def _info(row: m.StageLockRow) -> StageLockInfo:
    return StageLockInfo(
        plan_id=row.plan_id,
        stage=row.stage,
        holder=row.holder,
        run_id=row.run_id,
        acquired=row.acquired,
        heartbeat=row.heartbeat,
    )


class LeaseRepository:
    """A lease per (plan, stage): taken in one transaction with the plan row locked, renewed by
    a heartbeat, released at the end; a holder silent for ``stale_after`` is presumed dead."""

    def __init__(self, db: Sessions):
        self._db = db

    def acquire_stage_lock(
        self,
        plan_id: int,
        stage: str,
        holder: str,
        *,
        stale_after: timedelta,
        now: datetime | None = None,
        replacing: str | None = None,
    ) -> StageLockInfo | None:
        """Take the lock, or renew it if ``holder`` already has it.

        Check and take are one transaction with the plan row locked (PostgreSQL; SQLite
        writers queue on its write lock): of several processes taking a free or lapsed lease
        at once, one wins and the others are refused with the winner's lease.

        Args:
            stale_after: A holder silent this long (by the database's clock) is presumed dead.
            now: The time to judge and stamp with (tests); default the database's clock.
            replacing: A holder known gone (its process is dead): its lease is taken whatever
                its heartbeat, but only while that holder still has it; a lease someone else
                took over meanwhile is theirs (compare-and-set).

        Returns:
            None when ``holder`` now holds it; otherwise the live lock of someone else.
        """
        with self._db.session(write=True) as session:
            session.execute(
                select(m.PlanRow.id).where(m.PlanRow.id == plan_id).with_for_update()
            ).scalar_one()
            # Read after the plan row is ours: a clock read before waiting for it would be old.
            now = now or db_now(session)
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
            gone = replacing is not None and row.holder == replacing
            if row.holder != holder and not gone and now - row.heartbeat < stale_after:
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
        with self._db.session(write=False) as session:
            return [_info(row) for row in session.execute(select(m.StageLockRow)).scalars()]

    def stage_lock_run(self, plan_id: int, stage: str, holder: str, run_id: int) -> None:
        """Record which run the holder is executing (shown to anyone refused)."""
        with self._db.session(write=True) as session:
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
        with self._db.session(write=True) as session:
            result = session.execute(
                update(m.StageLockRow)
                .where(
                    m.StageLockRow.plan_id == plan_id,
                    m.StageLockRow.stage == stage,
                    m.StageLockRow.holder == holder,
                )
                .values(heartbeat=db_now(session))
            )
            return bool(result.rowcount)

    def release_stage_lock(self, plan_id: int, stage: str, holder: str) -> None:
        with self._db.session(write=True) as session:
            session.execute(
                delete(m.StageLockRow).where(
                    m.StageLockRow.plan_id == plan_id,
                    m.StageLockRow.stage == stage,
                    m.StageLockRow.holder == holder,
                )
            )
