"""Store methods for plans and their approvals (mixed into ``state.Store``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session, defer

from domain.runs import DRIFT_RUN
from state import models as m
from state.session import Sessions


@dataclass(frozen=True)
class ApprovalInfo:
    stage: str
    decision: str
    approver: str
    ticket: str
    comment: str
    plan_hash: str
    at: datetime


@dataclass(frozen=True)
class PlanInfo:
    id: int
    migration_id: int
    migration: str
    run_id: int
    created: datetime
    hash: str
    blocking: int
    content: dict[str, Any]
    approvals: list[ApprovalInfo]
    wave: str | None = None


class PlanRepository:
    """Plans are stored whole (their content is the thing approved) and found by hash."""

    def __init__(self, db: Sessions):
        self._db = db

    def save_plan(
        self,
        migration_id: int,
        run_id: int,
        plan_hash: str,
        content: dict[str, Any],
        blocking: int,
        wave: str | None = None,
    ) -> tuple[int, bool]:
        """Store a plan, or find the identical one already stored.

        Returns:
            (plan id, whether an identical plan already existed and was reused).
        """

        def work(session: Session) -> tuple[int, bool]:
            found = session.execute(
                select(m.PlanRow.id).where(
                    m.PlanRow.migration_id == migration_id, m.PlanRow.hash == plan_hash
                )
            ).scalar_one_or_none()
            if found is not None:
                return found, True
            plan_id = session.execute(
                insert(m.PlanRow)
                .values(
                    migration_id=migration_id,
                    run_id=run_id,
                    created=datetime.now(UTC),
                    hash=plan_hash,
                    blocking=blocking,
                    content=content,
                    wave=wave,
                )
                .returning(m.PlanRow.id)
            ).scalar_one()
            return plan_id, False

        return self._db.retrying_on_conflict(work)

    def get_plan(self, plan_id: int, *, with_content: bool = True) -> PlanInfo | None:
        """A stored plan with its approvals, oldest first; None if there is no such plan.

        Args:
            with_content: False: ``content`` is left empty (``{}``); the plan's header and
                approvals only, without decoding a 10,000-user plan the caller already has.
        """
        with self._db.session(write=False) as session:
            row = session.execute(
                select(m.PlanRow, m.Migration.name)
                .join(m.Migration, m.Migration.id == m.PlanRow.migration_id)
                .where(m.PlanRow.id == plan_id)
                .options(*(() if with_content else (defer(m.PlanRow.content),)))
            ).one_or_none()
            if row is None:
                return None
            plan, migration = row
            approvals = session.execute(
                select(m.ApprovalRow)
                .where(m.ApprovalRow.plan_id == plan_id)
                .order_by(m.ApprovalRow.id)
            ).scalars()
            return PlanInfo(
                id=plan.id,
                migration_id=plan.migration_id,
                migration=migration,
                run_id=plan.run_id,
                created=plan.created,
                hash=plan.hash,
                blocking=plan.blocking,
                content=plan.content if with_content else {},
                approvals=[
                    ApprovalInfo(
                        stage=a.stage,
                        decision=a.decision,
                        approver=a.approver,
                        ticket=a.ticket,
                        comment=a.comment,
                        plan_hash=a.plan_hash,
                        at=a.at,
                    )
                    for a in approvals
                ],
                wave=plan.wave,
            )

    def latest_plan_id(self, migration_id: int) -> int | None:
        """The migration's most recently stored plan, or None when it has none yet.

        A drift plan (stored by a ``drift`` run) is never "the latest plan": it restores
        what the migration's plans did and is named by its id when approved or applied.
        """
        drift_runs = select(m.Run.id).where(m.Run.kind == DRIFT_RUN)
        with self._db.session(write=False) as session:
            return session.execute(
                select(m.PlanRow.id)
                .where(m.PlanRow.migration_id == migration_id, m.PlanRow.run_id.not_in(drift_runs))
                .order_by(m.PlanRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def latest_drift_plan_id(self, migration_id: int) -> int | None:
        """The migration's most recently stored drift plan (stored by a ``drift`` run), or
        None: the only one that may still be applied (an older one read an older world)."""
        drift_runs = select(m.Run.id).where(m.Run.kind == DRIFT_RUN)
        with self._db.session(write=False) as session:
            return session.execute(
                select(m.PlanRow.id)
                .where(m.PlanRow.migration_id == migration_id, m.PlanRow.run_id.in_(drift_runs))
                .order_by(m.PlanRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def plan_provenance(self, plan_id: int, keys: tuple[str, ...]) -> dict[str, Any]:
        """Top-level values of a stored plan's content (say, where it was computed from),
        read without decoding the whole content (a key it lacks reads as None)."""
        with self._db.session(write=False) as session:
            row = session.execute(
                select(*(m.PlanRow.content[key] for key in keys)).where(m.PlanRow.id == plan_id)
            ).one()
            return dict(zip(keys, row, strict=True))

    def record_approval(
        self,
        plan_id: int,
        *,
        stage: str,
        decision: str,
        approver: str,
        ticket: str,
        comment: str,
        plan_hash: str,
        overlapping_stages: set[str],
        rejected_stages: frozenset[str] = frozenset(),
    ) -> ApprovalInfo | None:
        """Append a decision unless one already covers an overlapping stage.

        The check and the insert share one transaction, with the plan row locked on
        PostgreSQL (SQLite serializes writers), so two approvers racing can't both win.

        Args:
            overlapping_stages: Any earlier decision of these stops this one.
            rejected_stages: An earlier rejection (not an approval) of these stops it too.

        Returns:
            None when recorded; otherwise the earlier decision that overlaps.
        """
        with self._db.session(write=True) as session:
            session.execute(
                select(m.PlanRow.id).where(m.PlanRow.id == plan_id).with_for_update()
            ).scalar_one()
            for earlier in session.execute(
                select(m.ApprovalRow)
                .where(
                    m.ApprovalRow.plan_id == plan_id,
                    or_(
                        m.ApprovalRow.stage.in_(overlapping_stages),
                        and_(
                            m.ApprovalRow.stage.in_(rejected_stages),
                            m.ApprovalRow.decision != "approved",
                        ),
                    ),
                )
                .order_by(m.ApprovalRow.id)
            ).scalars():
                return ApprovalInfo(
                    stage=earlier.stage,
                    decision=earlier.decision,
                    approver=earlier.approver,
                    ticket=earlier.ticket,
                    comment=earlier.comment,
                    plan_hash=earlier.plan_hash,
                    at=earlier.at,
                )
            session.execute(
                insert(m.ApprovalRow).values(
                    plan_id=plan_id,
                    stage=stage,
                    decision=decision,
                    approver=approver,
                    ticket=ticket,
                    comment=comment,
                    plan_hash=plan_hash,
                    at=datetime.now(UTC),
                )
            )
        return None
