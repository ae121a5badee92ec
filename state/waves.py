"""Store reads for waves: each wave's plans, and who created and uses what across waves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from domain.runs import DRIFT_RUN, released_plans
from domain.waves import JournalUse
from state import models as m
from state.journal import ROLLBACK_PREFIX
from state.runs import RunRepository
from state.session import Sessions


@dataclass(frozen=True)
class PlanHead:
    """A plan without its content: enough to list a wave's plans."""

    id: int
    wave: str | None
    created: datetime
    hash: str
    blocking: int


class WavesRepository:
    """Reads across a migration's plans: each wave's plans, who created and uses what."""

    def __init__(self, db: Sessions, runs: RunRepository):
        self._db = db
        self._runs = runs

    def plan_heads(self, migration_id: int) -> list[PlanHead]:
        """The migration's plans, oldest first, without their content.

        Drift plans (stored by a ``drift`` run, without a wave) are left out: they are no
        wave's plan and never the migration's (``PlanRepository.latest_plan_id`` says so too).
        """
        drift_runs = select(m.Run.id).where(m.Run.kind == DRIFT_RUN)
        query = (
            select(m.PlanRow.id, m.PlanRow.wave, m.PlanRow.created, m.PlanRow.hash)
            .add_columns(m.PlanRow.blocking)
            .where(m.PlanRow.migration_id == migration_id, m.PlanRow.run_id.not_in(drift_runs))
            .order_by(m.PlanRow.id)
        )
        with self._db.session(write=False) as session:
            return [PlanHead(*row) for row in session.execute(query)]

    def last_change_by_others(
        self, migration_id: int, plan_id: int, stage: str = "provision"
    ) -> tuple[int, datetime] | None:
        """The latest step of the stage (forward or rollback) any other plan of the migration
        finished: (that plan, when), or None when no other plan ran the stage."""
        query = (
            select(m.JournalEventRow.plan_id, m.JournalEventRow.at)
            .join(m.PlanRow, m.PlanRow.id == m.JournalEventRow.plan_id)
            .where(
                m.PlanRow.migration_id == migration_id,
                m.JournalEventRow.plan_id != plan_id,
                m.JournalEventRow.stage == stage,
            )
            .order_by(m.JournalEventRow.at.desc(), m.JournalEventRow.id.desc())
            .limit(1)
        )
        with self._db.session(write=False) as session:
            row = session.execute(query).one_or_none()
        return None if row is None else (row[0], row[1])

    def journal_uses(self, migration_id: int, stage: str = "provision") -> list[JournalUse]:
        """Every forward journal row of the stage, in every plan of the migration, with its
        plan's wave: who created, adopted, provisioned and assigned what."""
        released = released_plans(self._runs.list_runs(migration_id), stage)
        query = (
            select(m.JournalRow, m.PlanRow.wave)
            .join(m.PlanRow, m.PlanRow.id == m.JournalRow.plan_id)
            .where(
                m.PlanRow.migration_id == migration_id,
                m.JournalRow.stage == stage,
                m.JournalRow.action_id.not_like(ROLLBACK_PREFIX + "%"),
            )
            .order_by(m.JournalRow.id)
        )
        uses = []
        with self._db.session(write=False) as session:
            for row, wave in session.execute(query):
                action = (row.intent or {}).get("action") or {}
                uses.append(
                    JournalUse(
                        plan_id=row.plan_id,
                        wave=wave,
                        kind=row.kind,
                        status=row.status,
                        account_id=row.account_id,
                        target=str(action.get("target", "")),
                        params=action.get("params") or {},
                        existed_before=(row.intent or {}).get("existed_before"),
                        started=row.started,
                        finished=row.finished,
                        released=row.plan_id in released,
                    )
                )
        return uses
