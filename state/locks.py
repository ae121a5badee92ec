"""Store methods for stage locks (mixed into ``state.Store``): one writer per plan stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update

from state import models as m


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


class LockMixin:
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
