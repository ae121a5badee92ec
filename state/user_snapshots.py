"""Retiring users in the store: snapshots before deletion, use evidence, bake decisions.

Mixed into :class:`state.Store`. Who was disabled, and when, is read from the journal: the
time a user's quarantine policy was attached by this tool is its "disabled at".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from domain.plan import Stage
from domain.retire import BakeDecision, Decision, UseEvidence
from domain.user_snapshot import TORN_DOWN_BY, merge_snapshot, same_snapshot
from state import models as m
from state.journal import JournalEntry, _entry
from state.session import Sessions, dialect_insert, lock_group

log = logging.getLogger(__name__)

QUARANTINE_KIND = "attach-quarantine-policy"
# The journal stage of restore steps (``iamc restore``), beside a plan's own stages.
RESTORE_STAGE = "restore"


@dataclass(frozen=True)
class StoredSnapshot:
    """A user as it was right before its first delete action."""

    id: int
    plan_id: int
    run_id: int
    account_id: str
    user_name: str
    user_id: str
    arn: str
    taken: datetime
    content: dict[str, Any]


@dataclass(frozen=True)
class DisabledUser:
    """A user this tool quarantined: the journal row of its quarantine action."""

    plan_id: int
    account_id: str
    user_name: str
    status: str  # the journal status: succeeded, adopted, rolled-back, failed, started
    disabled_at: datetime | None  # when the quarantine was recorded done


def _snapshot(row: m.UserSnapshotRow) -> StoredSnapshot:
    return StoredSnapshot(
        id=row.id,
        plan_id=row.plan_id,
        run_id=row.run_id,
        account_id=row.account_id,
        user_name=row.user_name,
        user_id=row.user_id,
        arn=row.arn,
        taken=row.taken,
        content=row.content,
    )


def _teardown_begun(session: Session, plan_id: int, account_id: str, user_name: str) -> set[str]:
    """Teardown kinds of the delete stage with a journal row for this user (any status)."""
    rows = session.execute(
        select(m.JournalRow.kind, m.JournalRow.intent).where(
            m.JournalRow.plan_id == plan_id,
            m.JournalRow.account_id == account_id,
            m.JournalRow.stage == str(Stage.DELETE),
            m.JournalRow.kind.in_(tuple(TORN_DOWN_BY.values())),
        )
    )
    return {
        kind
        for kind, intent in rows
        if ((intent or {}).get("action") or {}).get("target") == user_name
    }


def _evidence(row: m.UseEvidenceRow) -> UseEvidence:
    return UseEvidence(
        account_id=row.account_id,
        user_name=row.user_name,
        event_key=row.event_key,
        source=row.source,
        event_time=row.event_time,
        event_name=row.event_name,
        event_source=row.event_source,
        source_ip=row.source_ip,
        user_agent=row.user_agent,
        access_key_id=row.access_key_id,
        error_code=row.error_code,
    )


class RetireRepository:
    """Snapshots, use evidence and bake decisions; each call is its own transaction."""

    def __init__(self, db: Sessions):
        self._db = db

    # -- snapshots --------------------------------------------------------------------------

    def save_user_snapshot(
        self,
        *,
        migration_id: int,
        plan_id: int,
        run_id: int,
        account_id: str,
        user_name: str,
        user_id: str,
        arn: str,
        taken: datetime,
        content: dict[str, Any],
    ) -> int:
        """Store the snapshot of one user of a plan, as a new version only if it changed.

        A user read again (a resumed deletion) is compared with its newest stored snapshot of
        the same unique id: unchanged (volatile fields aside) keeps that one; changed stores a
        new version and keeps the old. For a teardown step that already began, what the
        stored snapshot had is kept (``domain.user_snapshot.merge_snapshot``).

        Processes saving one user at once queue on the user's lock: each compares with
        what the one before it stored, so an unchanged user is stored once, not once each.

        Returns:
            The id of the user's newest snapshot.
        """
        with self._db.session(write=True) as session:
            lock_group(session, "user-snapshot", plan_id, account_id, user_name)
            newest = session.execute(
                select(m.UserSnapshotRow)
                .where(
                    m.UserSnapshotRow.plan_id == plan_id,
                    m.UserSnapshotRow.account_id == account_id,
                    m.UserSnapshotRow.user_name == user_name,
                )
                .order_by(m.UserSnapshotRow.id.desc())
                .limit(1)
            ).scalar_one_or_none()
            if newest is not None and newest.user_id == user_id:
                begun = _teardown_begun(session, plan_id, account_id, user_name)
                content = merge_snapshot(newest.content, content, begun)
                if same_snapshot(newest.content, content):
                    return newest.id
                log.info(
                    "%s/%s changed since its snapshot %s: stored a newer one",
                    account_id,
                    user_name,
                    newest.id,
                )
            return session.execute(
                insert(m.UserSnapshotRow)
                .values(
                    migration_id=migration_id,
                    plan_id=plan_id,
                    run_id=run_id,
                    account_id=account_id,
                    user_name=user_name,
                    user_id=user_id,
                    arn=arn,
                    taken=taken,
                    content=content,
                )
                .returning(m.UserSnapshotRow.id)
            ).scalar_one()

    def restore_rows(self, plan_id: int, account_id: str, user_name: str) -> list[JournalEntry]:
        """Journal rows of every restore of one user of a plan, oldest first."""
        query = (
            select(m.JournalRow)
            .where(
                m.JournalRow.plan_id == plan_id,
                m.JournalRow.account_id == account_id,
                m.JournalRow.stage == RESTORE_STAGE,
            )
            .order_by(m.JournalRow.id)
        )
        with self._db.session(write=False) as session:
            return [
                entry
                for entry in (_entry(row) for row in session.execute(query).scalars())
                if (entry.intent.get("action") or {}).get("target") == user_name
            ]

    def user_snapshots(
        self,
        migration_id: int,
        *,
        account_id: str | None = None,
        user_name: str | None = None,
        plan_id: int | None = None,
    ) -> list[StoredSnapshot]:
        """Snapshots of the migration, oldest first, optionally of one user or plan."""
        query = select(m.UserSnapshotRow).where(m.UserSnapshotRow.migration_id == migration_id)
        if account_id is not None:
            query = query.where(m.UserSnapshotRow.account_id == account_id)
        if user_name is not None:
            query = query.where(m.UserSnapshotRow.user_name == user_name)
        if plan_id is not None:
            query = query.where(m.UserSnapshotRow.plan_id == plan_id)
        with self._db.session(write=False) as session:
            rows = session.execute(query.order_by(m.UserSnapshotRow.id)).scalars()
            return [_snapshot(row) for row in rows]

    # -- who is disabled ----------------------------------------------------------------------

    def disabled_users(self, migration_id: int) -> list[DisabledUser]:
        """Every user whose quarantine this migration recorded, newest plan's row last."""
        query = (
            select(m.JournalRow)
            .join(m.PlanRow, m.PlanRow.id == m.JournalRow.plan_id)
            .where(m.PlanRow.migration_id == migration_id, m.JournalRow.kind == QUARANTINE_KIND)
            .where(m.JournalRow.action_id.not_like("rollback:%"))
            .order_by(m.JournalRow.plan_id, m.JournalRow.id)
        )
        with self._db.session(write=False) as session:
            rows = session.execute(query).scalars().all()
            return [
                DisabledUser(
                    plan_id=row.plan_id,
                    account_id=row.account_id or "",
                    user_name=str(((row.intent or {}).get("action") or {}).get("target", "")),
                    status=row.status,
                    disabled_at=row.finished,
                )
                for row in rows
            ]

    # -- evidence and decisions ---------------------------------------------------------------

    def add_use_evidence(self, migration_id: int, evidence: list[UseEvidence]) -> int:
        """Record evidence not seen before (by event key); returns how many were new."""
        if not evidence:
            return 0
        now = datetime.now(UTC)
        rows = [
            {
                "migration_id": migration_id,
                "account_id": item.account_id,
                "user_name": item.user_name,
                "event_key": item.event_key,
                "source": item.source,
                "event_time": item.event_time,
                "event_name": item.event_name,
                "event_source": item.event_source,
                "source_ip": item.source_ip,
                "user_agent": item.user_agent,
                "access_key_id": item.access_key_id,
                "error_code": item.error_code,
                "found": now,
            }
            for item in evidence
        ]
        new = 0
        with self._db.session(write=True) as session:
            for row in rows:
                # ON CONFLICT DO NOTHING: a process recording the same event at once (a
                # retried account) neither fails on the other's row nor counts it twice.
                result = session.execute(
                    dialect_insert(session, m.UseEvidenceRow)
                    .values(**row)
                    .on_conflict_do_nothing(
                        index_elements=[
                            m.UseEvidenceRow.migration_id,
                            m.UseEvidenceRow.account_id,
                            m.UseEvidenceRow.user_name,
                            m.UseEvidenceRow.event_key,
                        ]
                    )
                    .returning(m.UseEvidenceRow.id)
                )
                new += len(result.all())
        return new

    def use_evidence(
        self, migration_id: int, account_id: str | None = None, user_name: str | None = None
    ) -> list[UseEvidence]:
        """Recorded evidence, oldest event first."""
        query = select(m.UseEvidenceRow).where(m.UseEvidenceRow.migration_id == migration_id)
        if account_id is not None:
            query = query.where(m.UseEvidenceRow.account_id == account_id)
        if user_name is not None:
            query = query.where(m.UseEvidenceRow.user_name == user_name)
        with self._db.session(write=False) as session:
            rows = session.execute(query.order_by(m.UseEvidenceRow.event_time)).scalars()
            return [_evidence(row) for row in rows]

    def record_bake_decision(
        self,
        migration_id: int,
        account_id: str,
        user_name: str,
        decision: Decision,
        decided_by: str,
        reason: str,
        at: datetime | None = None,
    ) -> BakeDecision:
        """Record who decided what about a user with use evidence, and why."""
        at = at or datetime.now(UTC)
        with self._db.session(write=True) as session:
            session.execute(
                insert(m.BakeDecisionRow).values(
                    migration_id=migration_id,
                    account_id=account_id,
                    user_name=user_name,
                    decision=str(decision),
                    decided_by=decided_by,
                    reason=reason,
                    at=at,
                )
            )
        return BakeDecision(account_id, user_name, decision, decided_by, reason, at)

    def bake_decisions(
        self, migration_id: int, account_id: str | None = None, user_name: str | None = None
    ) -> list[BakeDecision]:
        """Recorded decisions, oldest first."""
        query = select(m.BakeDecisionRow).where(m.BakeDecisionRow.migration_id == migration_id)
        if account_id is not None:
            query = query.where(m.BakeDecisionRow.account_id == account_id)
        if user_name is not None:
            query = query.where(m.BakeDecisionRow.user_name == user_name)
        with self._db.session(write=False) as session:
            rows = session.execute(query.order_by(m.BakeDecisionRow.at)).scalars()
            return [
                BakeDecision(
                    r.account_id, r.user_name, Decision(r.decision), r.decided_by, r.reason, r.at
                )
                for r in rows
            ]

    def deleted_users(self, migration_id: int) -> set[tuple[str, str]]:
        """(account, user) of every user whose delete-user step this migration finished."""
        query = (
            select(m.JournalRow.account_id, m.JournalRow.intent)
            .join(m.PlanRow, m.PlanRow.id == m.JournalRow.plan_id)
            .where(
                m.PlanRow.migration_id == migration_id,
                m.JournalRow.kind == "delete-user",
                m.JournalRow.status.in_(("succeeded", "adopted")),
            )
        )
        with self._db.session(write=False) as session:
            return {
                (account_id or "", str(((intent or {}).get("action") or {}).get("target", "")))
                for account_id, intent in session.execute(query)
            }
