"""Migrations: one row per spec ``name``, holding the spec it was last run with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from state import models as m
from state.session import Sessions


class MigrationRepository:
    """The migrations the state DB knows, by name."""

    def __init__(self, db: Sessions):
        self._db = db

    def ensure_migration(self, name: str, spec: dict[str, Any]) -> int:
        """Get or create the migration called ``name`` and store ``spec`` as its spec.

        Args:
            name: The spec's ``name``.
            spec: The spec as JSON-compatible data.

        Returns:
            The migration's id.

        Raises:
            StateError: The DB can't be written.
        """

        def work(session: Session) -> int:
            now = datetime.now(UTC)
            found = session.execute(
                select(m.Migration.id).where(m.Migration.name == name)
            ).scalar_one_or_none()
            if found is not None:
                session.execute(
                    update(m.Migration)
                    .where(m.Migration.id == found)
                    .values(spec=spec, updated=now)
                )
                return found
            return session.execute(
                insert(m.Migration)
                .values(name=name, spec=spec, created=now, updated=now)
                .returning(m.Migration.id)
            ).scalar_one()

        return self._db.retrying_on_conflict(work)

    def find_migration(self, name: str) -> int | None:
        """Return the id of the migration called ``name`` without creating or touching it.

        Args:
            name: The spec's ``name``.

        Returns:
            The id, or None when no run of that migration was ever recorded.
        """
        with self._db.session(write=False) as session:
            return session.execute(
                select(m.Migration.id).where(m.Migration.name == name)
            ).scalar_one_or_none()
