"""The workloads step's results: per run, where each workload user's keys are used from."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, insert, select

from domain.workload_json import placement_from_json, placement_to_json
from domain.workloads import Placement
from state import models as m
from state.session import Sessions

WORKLOADS_RUN = "workloads"


class WorkloadsRepository:
    """Placements by workloads run; the latest completed run's, for the plan and the report."""

    def __init__(self, db: Sessions):
        self._db = db

    def save_placements(self, migration_id: int, run_id: int, placements: list[Placement]) -> None:
        """Store one row per placement of run ``run_id`` (key ids whole: the state DB)."""
        now = datetime.now(UTC)
        rows = [
            {
                "migration_id": migration_id,
                "run_id": run_id,
                "account_id": p.account_id,
                "user_name": p.user,
                "runtime": str(p.runtime),
                "confidence": str(p.confidence),
                "role_first_used": p.role_first_used,
                "recorded": now,
                "content": placement_to_json(p, masked=False),
            }
            for p in placements
        ]
        if not rows:
            return
        with self._db.session(write=True) as session:
            session.execute(insert(m.PlacementRow), rows)

    def latest_run(self, migration_id: int) -> int | None:
        """The newest workloads run that succeeded (it may have left accounts unread)."""
        query = select(func.max(m.Run.id)).where(
            m.Run.migration_id == migration_id,
            m.Run.kind == WORKLOADS_RUN,
            m.Run.status == "succeeded",
        )
        with self._db.session(write=False) as session:
            return session.execute(query).scalar()

    def latest(self, migration_id: int) -> dict[tuple[str, str], Placement]:
        """{(account, user): placement} of the latest completed workloads run.

        An account that run could not read (its summary's ``accounts_failed``) keeps the
        placements of the last run that did. ``role_first_used`` is the earliest use of the
        user's replacement role any run saw. Empty before the first run.
        """
        latest = self.latest_run(migration_id)
        if latest is None:
            return {}
        with self._db.session(write=False) as session:
            summary = session.get(m.Run, latest).summary or {}
            unread = set(summary.get("accounts_failed") or {})
            rows = session.execute(
                select(m.PlacementRow)
                .join(m.Run, m.Run.id == m.PlacementRow.run_id)
                .where(
                    m.PlacementRow.migration_id == migration_id,
                    m.Run.status == "succeeded",
                    m.PlacementRow.run_id <= latest,
                )
                .order_by(m.PlacementRow.run_id, m.PlacementRow.id)
            ).scalars()
            found: dict[tuple[str, str], Placement] = {}
            first_use: dict[tuple[str, str], datetime] = {}
            for row in rows:
                key = (row.account_id, row.user_name)
                if row.role_first_used is not None:
                    first_use[key] = min(
                        first_use.get(key, row.role_first_used), row.role_first_used
                    )
                if row.run_id == latest or row.account_id in unread:
                    found[key] = placement_from_json(row.content)
        for key, placement in found.items():
            placement.role_first_used = first_use.get(key)
        return found
