"""The notices' mail journal: per notice content and recipient, the intent and the outcome."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from domain.errors import StateError
from domain.notice_mail import SENDING, SENT, MailRecord
from state import models as m
from state.session import Sessions

_SLICE = 1000


class NoticeMailRepository:
    """Claims deliveries (the intent row), records their outcomes, reads them back."""

    def __init__(self, db: Sessions):
        self._db = db

    def deliveries(self, migration_id: int, notices: Iterable[str]) -> list[MailRecord]:
        """Every journaled delivery of the notices of these people (any content), oldest first.

        Args:
            migration_id: The migration.
            notices: Identity-store user names, whose notices these are.
        """
        wanted = sorted(set(notices))
        found: list[MailRecord] = []
        with self._db.session(write=False) as session:
            # In slices: a 10,000-person wave would pass SQLite's limit of bound parameters.
            for start in range(0, len(wanted), _SLICE):
                rows = session.execute(
                    select(m.NoticeMailRow).where(
                        m.NoticeMailRow.migration_id == migration_id,
                        m.NoticeMailRow.notice.in_(wanted[start : start + _SLICE]),
                    )
                ).scalars()
                found += [_record(row) for row in rows]
        return sorted(found, key=lambda r: r.id)

    def of_plan(self, plan_id: int) -> list[MailRecord]:
        """Every journaled delivery of a plan's notices, oldest first."""
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(m.NoticeMailRow)
                .where(m.NoticeMailRow.plan_id == plan_id)
                .order_by(m.NoticeMailRow.id)
            ).scalars()
            return [_record(row) for row in rows]

    def claim(
        self,
        migration_id: int,
        plan_id: int,
        run_id: int,
        *,
        notice: str,
        recipient: str,
        message_hash: str,
        message_id: str,
        subject: str,
    ) -> int | None:
        """Write the intent to mail a notice's content to a recipient, committed before sending.

        Returns:
            The row's id; None when the delivery is journaled already (another run claimed it
            since it was read): the caller must not send.
        """
        now = datetime.now(UTC)
        row = m.NoticeMailRow(
            migration_id=migration_id,
            plan_id=plan_id,
            run_id=run_id,
            notice=notice,
            recipient=recipient,
            message_hash=message_hash,
            message_id=message_id,
            subject=subject,
            status=SENDING,
            attempts=1,
            created_at=now,
            updated_at=now,
        )
        try:
            with self._db.session(write=True) as session:
                session.add(row)
                session.flush()
                return row.id
        except StateError as err:
            if isinstance(err.__cause__, IntegrityError):
                return None
            raise

    def claim_again(
        self, record_id: int, run_id: int, *, from_statuses: tuple[str, ...], message_id: str
    ) -> bool:
        """Take a journaled delivery back to ``sending`` for another attempt by ``run_id``.

        Only from one of ``from_statuses``, in one conditional UPDATE: of two runs retrying
        the same delivery, one claims it and the other gets False.
        """
        with self._db.session(write=True) as session:
            result = session.execute(
                update(m.NoticeMailRow)
                .where(m.NoticeMailRow.id == record_id, m.NoticeMailRow.status.in_(from_statuses))
                .values(
                    status=SENDING,
                    run_id=run_id,
                    message_id=message_id,
                    error=None,
                    attempts=m.NoticeMailRow.attempts + 1,
                    updated_at=datetime.now(UTC),
                )
            )
            return result.rowcount == 1

    def finish(self, record_id: int, status: str, error: str | None = None) -> None:
        """Record a claimed delivery's outcome: ``sent``, ``failed`` or ``unknown``."""
        now = datetime.now(UTC)
        with self._db.session(write=True) as session:
            session.execute(
                update(m.NoticeMailRow)
                .where(m.NoticeMailRow.id == record_id)
                .values(
                    status=status,
                    error=error,
                    updated_at=now,
                    sent_at=now if status == SENT else None,
                )
            )

    def mark_sent(
        self, record_id: int, run_id: int, *, from_statuses: tuple[str, ...], note: str
    ) -> bool:
        """Record as sent a delivery whose outcome was unknown (the operator read the mail log)."""
        now = datetime.now(UTC)
        with self._db.session(write=True) as session:
            result = session.execute(
                update(m.NoticeMailRow)
                .where(m.NoticeMailRow.id == record_id, m.NoticeMailRow.status.in_(from_statuses))
                .values(status=SENT, run_id=run_id, error=note, updated_at=now, sent_at=now)
            )
            return result.rowcount == 1


def _record(row: m.NoticeMailRow) -> MailRecord:
    return MailRecord(
        id=row.id,
        plan_id=row.plan_id,
        run_id=row.run_id,
        notice=row.notice,
        recipient=row.recipient,
        message_hash=row.message_hash,
        message_id=row.message_id,
        subject=row.subject,
        status=row.status,
        error=row.error,
        attempts=row.attempts,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )
