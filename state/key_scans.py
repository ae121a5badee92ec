"""Key scans in the state DB (mixed into ``state.Store``): findings, coverage, acceptances.

Whole key ids are stored here and nowhere else; secrets never (there is no column for one).
A scan spread over a work pool keeps its HMAC salt here while its batches run, and no longer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select

from domain.errors import StateError
from domain.key_attribution import (
    KeyAcceptance,
    KeyFinding,
    KeyOwner,
    ScanProblem,
    unit_of,
)
from domain.runs import RUN_RUNNING
from state import models as m
from state.session import Sessions

KEY_SCAN_RUN = "key-scan"
UNIT_SCANNED = "scanned"


@dataclass(frozen=True)
class ScanUnit:
    """One thing a scan set out to read, and how that went (scanned, skipped, gap, failed)."""

    unit: str
    status: str
    detail: str = ""


def _finding_row(run_id: int, finding: KeyFinding) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "unit": unit_of(finding),
        "classification": finding.classification,
        "source": finding.source,
        "location": finding.location,
        "line": finding.line,
        "key_id": finding.key_id,
        "note": finding.note,
        "root": finding.root,
        "commit_id": finding.commit,
        "blob_id": finding.blob,
        "history_only": finding.history_only,
        "found_in_account": finding.found_in_account,
        "region": finding.region,
        "pair_found": finding.pair_found,
        "pair_hmac": finding.pair_hmac,
        "owner_account_id": finding.owner_account_id,
        "owner_user": finding.owner_user,
        "owner_class": finding.owner_class,
        "key_status": finding.key_status,
        "key_last_used": finding.key_last_used,
    }


def _finding(row: Any) -> KeyFinding:
    return KeyFinding(
        classification=row.classification,
        source=row.source,
        location=row.location,
        line=row.line,
        key_id=row.key_id,
        note=row.note,
        root=row.root,
        commit=row.commit_id,
        blob=row.blob_id,
        history_only=row.history_only,
        found_in_account=row.found_in_account,
        region=row.region,
        pair_found=row.pair_found,
        pair_hmac=row.pair_hmac,
        owner_account_id=row.owner_account_id,
        owner_user=row.owner_user,
        owner_class=row.owner_class,
        key_status=row.key_status,
        key_last_used=row.key_last_used,
    )


class KeyScanRepository:
    """Key-scan methods of ``state.Store``; each call is its own transaction."""

    def __init__(self, db: Sessions):
        self._db = db

    def save_key_scan(
        self,
        run_id: int,
        findings: Iterable[KeyFinding],
        units: Iterable[ScanUnit],
        problems: Iterable[ScanProblem],
    ) -> None:
        """Store what one scan run found, what it covered and what it could not read.

        Args:
            run_id: The ``key-scan`` run.
            findings: Joined findings (hits, promoted and ignored look-alikes).
            units: Every code path and account/source/region the scan set out to read.
            problems: Skipped items, gaps and failed accounts.

        Raises:
            StateError: No such run, or the DB can't be written.
        """
        finding_rows = [_finding_row(run_id, f) for f in findings]
        unit_rows = [
            {"run_id": run_id, "unit": u.unit, "status": u.status, "detail": u.detail}
            for u in {u.unit: u for u in units}.values()
        ]
        problem_rows = [
            {
                "run_id": run_id,
                "kind": p.kind,
                "source": p.source,
                "location": p.location,
                "reason": p.reason,
                "root": p.root,
                "account_id": p.account_id,
            }
            for p in problems
        ]
        with self._db.session(write=True) as session:
            for model, rows in (
                (m.KeyScanFindingRow, finding_rows),
                (m.KeyScanUnitRow, unit_rows),
                (m.KeyScanProblemRow, problem_rows),
            ):
                if rows:
                    session.execute(insert(model), rows)

    def hold_salt(self, run_id: int, salt: bytes, lifetime: timedelta) -> None:
        """Keep a running scan's salt for its batch runs on the pool, until :meth:`drop_salt`.

        Also drops what scans that ended without dropping theirs left (their run finished, or
        the salt outlived ``lifetime``, the longest any scan may hand it out): a parent killed
        outright runs no ``finally``.

        Args:
            run_id: The ``key-scan`` run.
            salt: Its detector's salt (never logged, never a Prefect parameter).
            lifetime: How long a batch may still start and read it.

        Raises:
            StateError: The DB refused it (the message and traceback hold no salt).
        """
        now = datetime.now(UTC)
        finished = select(m.Run.id).where(m.Run.status != RUN_RUNNING)
        refused = None
        try:
            with self._db.session(write=True) as session:
                session.execute(
                    delete(m.KeyScanSaltRow).where(
                        or_(
                            m.KeyScanSaltRow.expires < now,
                            m.KeyScanSaltRow.run_id.in_(finished),
                            m.KeyScanSaltRow.run_id == run_id,
                        )
                    )
                )
                session.add(m.KeyScanSaltRow(run_id=run_id, salt=salt, expires=now + lifetime))
        except StateError as err:
            refused = str(err)  # the driver's own line: no parameter in it
        if refused is not None:
            # Raised apart from the driver's error, which prints the statement's parameters
            # (the salt's bytes among them): a traceback a flow run logs must not hold it.
            raise StateError(refused)

    def scan_salt(self, run_id: int) -> bytes | None:
        """The salt of scan run ``run_id`` while it hands one out; None once it has ended."""
        with self._db.session(write=False) as session:
            salt = session.execute(
                select(m.KeyScanSaltRow.salt).where(
                    m.KeyScanSaltRow.run_id == run_id,
                    m.KeyScanSaltRow.expires >= datetime.now(UTC),
                )
            ).scalar_one_or_none()
        return bytes(salt) if salt is not None else None

    def drop_salt(self, run_id: int) -> None:
        """Forget a scan's salt: its batches are done (or abandoned), nobody needs it again."""
        with self._db.session(write=True) as session:
            session.execute(delete(m.KeyScanSaltRow).where(m.KeyScanSaltRow.run_id == run_id))

    def latest_key_scan_run(self, migration_id: int) -> int | None:
        """The id of the migration's latest finished key-scan run (succeeded), or None."""
        with self._db.session(write=False) as session:
            return session.execute(
                select(m.Run.id)
                .where(
                    m.Run.migration_id == migration_id,
                    m.Run.kind == KEY_SCAN_RUN,
                    m.Run.status == "succeeded",
                )
                .order_by(m.Run.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def key_scan_findings(self, run_id: int) -> list[KeyFinding]:
        """A scan run's findings, in the order they were stored."""
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(m.KeyScanFindingRow)
                .where(m.KeyScanFindingRow.run_id == run_id)
                .order_by(m.KeyScanFindingRow.id)
            ).scalars()
            return [_finding(row) for row in rows]

    def key_scan_units(self, run_id: int) -> list[ScanUnit]:
        """What a scan run set out to read, and how each went."""
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(m.KeyScanUnitRow)
                .where(m.KeyScanUnitRow.run_id == run_id)
                .order_by(m.KeyScanUnitRow.id)
            ).scalars()
            return [ScanUnit(row.unit, row.status, row.detail) for row in rows]

    def key_scan_problems(self, run_id: int) -> list[ScanProblem]:
        """What a scan run could not read (completely), and why."""
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(m.KeyScanProblemRow)
                .where(m.KeyScanProblemRow.run_id == run_id)
                .order_by(m.KeyScanProblemRow.id)
            ).scalars()
            return [
                ScanProblem(
                    row.kind, row.source, row.location, row.reason, row.root, row.account_id
                )
                for row in rows
            ]

    def current_key_findings(self, migration_id: int) -> tuple[list[KeyFinding], list[str]]:
        """What the scans say now: per unit of the latest scan, the latest scan that read it.

        A later scan replaces an earlier one's findings only where it actually read: an account
        it could not reach, or a source that was a gap, keeps the findings of the last scan that
        did read it. Units the latest scan no longer lists (a path dropped from the spec) drop.

        Returns:
            (findings, units of the latest scan that no scan has ever read); ([], []) before
            the first scan.
        """
        latest = self.latest_key_scan_run(migration_id)
        if latest is None:
            return [], []
        with self._db.session(write=False) as session:
            wanted = {
                row.unit
                for row in session.execute(
                    select(m.KeyScanUnitRow.unit).where(m.KeyScanUnitRow.run_id == latest)
                )
            }
            scanned = session.execute(
                select(m.KeyScanUnitRow.unit, m.KeyScanUnitRow.run_id)
                .join(m.Run, m.Run.id == m.KeyScanUnitRow.run_id)
                .where(
                    m.Run.migration_id == migration_id,
                    m.Run.kind == KEY_SCAN_RUN,
                    m.Run.status == "succeeded",
                    m.KeyScanUnitRow.status == UNIT_SCANNED,
                )
            ).all()
            newest: dict[str, int] = {}
            for unit, run_id in scanned:
                if unit in wanted and run_id > newest.get(unit, 0):
                    newest[unit] = run_id
            findings: list[KeyFinding] = []
            for run_id in sorted(set(newest.values())):
                units = [u for u, r in newest.items() if r == run_id]
                rows = session.execute(
                    select(m.KeyScanFindingRow)
                    .where(
                        m.KeyScanFindingRow.run_id == run_id,
                        m.KeyScanFindingRow.unit.in_(units),
                    )
                    .order_by(m.KeyScanFindingRow.id)
                ).scalars()
                findings.extend(_finding(row) for row in rows)
        return findings, sorted(wanted - set(newest))

    def earlier_key_owners(self, migration_id: int, latest_snapshot_id: int) -> dict[str, KeyOwner]:
        """{key id: owner} of keys in the migration's earlier complete snapshots (newest wins)."""
        query = (
            select(
                m.AccessKey.key_id,
                m.AccessKey.status,
                m.AccessKey.last_used_date,
                m.IamUser.name,
                m.IamUser.user_class,
                m.SnapshotAccount.account_id,
                m.Snapshot.id.label("snapshot_id"),
            )
            .join(m.IamUser, m.IamUser.id == m.AccessKey.user_id)
            .join(m.SnapshotAccount, m.SnapshotAccount.id == m.IamUser.snapshot_account_id)
            .join(m.Snapshot, m.Snapshot.id == m.SnapshotAccount.snapshot_id)
            .where(
                m.Snapshot.migration_id == migration_id,
                m.Snapshot.completed.is_not(None),
                m.Snapshot.id != latest_snapshot_id,
            )
            .order_by(m.Snapshot.id)
        )
        owners: dict[str, KeyOwner] = {}
        with self._db.session(write=False) as session:
            for row in session.execute(query):
                owners[row.key_id] = KeyOwner(
                    account_id=row.account_id,
                    user=row.name,
                    status=row.status,
                    user_class=row.user_class,
                    last_used=row.last_used_date,
                    snapshot_id=row.snapshot_id,
                )
        return owners

    def record_key_acceptance(self, migration_id: int, acceptance: KeyAcceptance) -> None:
        """Record an approver's acceptance of a user's hard-coded keys."""
        with self._db.session(write=True) as session:
            session.execute(
                insert(m.KeyAcceptanceRow).values(
                    migration_id=migration_id,
                    account_id=acceptance.account_id,
                    user_name=acceptance.user,
                    approver=acceptance.approver,
                    reason=acceptance.reason,
                    key_ids=list(acceptance.key_ids),
                    scan_run_id=acceptance.scan_run_id,
                    at=acceptance.at or datetime.now(UTC),
                )
            )

    def key_acceptances(self, migration_id: int) -> list[KeyAcceptance]:
        """Every acceptance recorded for the migration, oldest first."""
        with self._db.session(write=False) as session:
            rows = session.execute(
                select(m.KeyAcceptanceRow)
                .where(m.KeyAcceptanceRow.migration_id == migration_id)
                .order_by(m.KeyAcceptanceRow.id)
            ).scalars()
            return [
                KeyAcceptance(
                    account_id=row.account_id,
                    user=row.user_name,
                    approver=row.approver,
                    reason=row.reason,
                    key_ids=tuple(row.key_ids or ()),
                    at=row.at,
                    scan_run_id=row.scan_run_id,
                )
                for row in rows
            ]
