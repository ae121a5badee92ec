"""The usage step's results: per read, what each IAM user used in the window, and who was not."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from domain.usage import UsageRead, UserUsage
from state import models as m
from state.session import Sessions

USAGE_RUN = "usage"


class UsageRepository:
    """Usage reads by usage run; the newest, for the plan (least privilege) and the report."""

    def __init__(self, db: Sessions):
        self._db = db

    def save_read(self, migration_id: int, run_id: int, read: UsageRead) -> int:
        """Store ``read`` (made by run ``run_id``) and its users; returns the read's id.

        ``read.id`` is set to it as well.
        """
        with self._db.session(write=True) as session:
            row = m.UsageReadRow(
                migration_id=migration_id,
                run_id=run_id,
                snapshot_id=read.snapshot_id,
                window_days=read.window_days,
                read_at=datetime.fromisoformat(read.read_at.replace("Z", "+00:00")),
                content_hash=read.content_hash(),
                unread=[[a, u, why] for (a, u), why in sorted(read.unread.items())],
            )
            session.add(row)
            session.flush()
            users = [
                {
                    "read_id": row.id,
                    "account_id": usage.account_id,
                    "user_name": usage.user,
                    "content": usage.as_json(),
                }
                for _, usage in sorted(read.users.items())
            ]
            if users:
                session.execute(insert(m.UserUsageRow), users)
            read.id = row.id
            return row.id

    def latest(self, migration_id: int) -> UsageRead | None:
        """The newest read of the migration (whatever its snapshot), with its id; None before
        the first."""
        with self._db.session(write=False) as session:
            read_id = session.execute(
                select(m.UsageReadRow.id)
                .where(m.UsageReadRow.migration_id == migration_id)
                .order_by(m.UsageReadRow.id.desc())
                .limit(1)
            ).scalar()
        return None if read_id is None else self.load(read_id)

    def load(self, read_id: int) -> UsageRead | None:
        """One stored read by id (None: no such read)."""
        with self._db.session(write=False) as session:
            row = session.get(m.UsageReadRow, read_id)
            if row is None:
                return None
            users = session.execute(
                select(m.UserUsageRow).where(m.UserUsageRow.read_id == read_id)
            ).scalars()
            found = {(u.account_id, u.user_name): UserUsage.from_json(u.content) for u in users}
            return UsageRead(
                id=row.id,
                snapshot_id=row.snapshot_id,
                window_days=row.window_days,
                read_at=row.read_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                users=found,
                unread={(a, u): why for a, u, why in row.unread},
            )
