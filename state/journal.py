"""The store's step journal: each mutating action's intent, outcome and undo (mixed into Store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from domain.errors import StateError
from state import models as m
from state.session import Sessions, dialect_insert

# Journal statuses. A forward action is started, then succeeded (we did it), adopted (it was
# already there, identical: never undone) or failed; a rollback marks it rolled-back.
STARTED = "started"
SUCCEEDED = "succeeded"
ADOPTED = "adopted"
FAILED = "failed"
ROLLED_BACK = "rolled-back"
DONE_STATUSES = frozenset({SUCCEEDED, ADOPTED})
ROLLBACK_PREFIX = "rollback:"


@dataclass(frozen=True)
class JournalEntry:
    """One journal row as recorded."""

    run_id: int
    plan_id: int
    stage: str
    action_id: str
    kind: str
    account_id: str | None
    status: str
    intent: dict[str, Any]
    outcome: dict[str, Any] | None
    undo: dict[str, Any] | None
    error: str | None
    attempts: int
    started: datetime
    finished: datetime | None

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES


def _entry(row: m.JournalRow) -> JournalEntry:
    return JournalEntry(
        run_id=row.run_id,
        plan_id=row.plan_id,
        stage=row.stage,
        action_id=row.action_id,
        kind=row.kind,
        account_id=row.account_id,
        status=row.status,
        intent=row.intent or {},
        outcome=row.outcome,
        undo=row.undo,
        error=row.error,
        attempts=row.attempts,
        started=row.started,
        finished=row.finished,
    )


@dataclass(frozen=True)
class JournalEvent:
    """One outcome of one action in one run."""

    run_id: int
    plan_id: int
    stage: str
    action_id: str
    kind: str
    account_id: str | None
    status: str
    error: str | None
    at: datetime


class JournalRepository:
    """Journal methods of :class:`state.Store`; each call is its own committed transaction.

    The executor writes the intent with :meth:`journal_intent` *before* the AWS call, so a
    process that dies during the call leaves a ``started`` row for the next run to reconcile.
    """

    def __init__(self, db: Sessions):
        self._db = db

    def journal_entry(self, plan_id: int, action_id: str) -> JournalEntry | None:
        """The row of one action of a plan, or None if it was never attempted."""
        with self._db.session(write=False) as session:
            row = session.execute(
                select(m.JournalRow).where(
                    m.JournalRow.plan_id == plan_id, m.JournalRow.action_id == action_id
                )
            ).scalar_one_or_none()
            return None if row is None else _entry(row)

    def journal_entries(self, plan_id: int, stage: str | None = None) -> list[JournalEntry]:
        """A plan's rows (forward and rollback) in the order they were first written."""
        query = select(m.JournalRow).where(m.JournalRow.plan_id == plan_id)
        if stage is not None:
            query = query.where(m.JournalRow.stage == stage)
        with self._db.session(write=False) as session:
            return [
                _entry(row) for row in session.execute(query.order_by(m.JournalRow.id)).scalars()
            ]

    def journal_intent(
        self,
        *,
        run_id: int,
        plan_id: int,
        stage: str,
        action_id: str,
        kind: str,
        account_id: str | None,
        intent: dict[str, Any],
    ) -> JournalEntry:
        """Record that an action is about to be attempted, and commit, before calling AWS.

        A second attempt of the same action updates its row: attempts go up, the outcome and
        error are cleared, the undo of an earlier attempt is kept. One statement (``INSERT ...
        ON CONFLICT DO UPDATE``), so processes writing the intent of one action at once leave
        one row that counts each of them, and none fails on the other's insert.

        Raises:
            StateError: The DB can't be written.
        """
        now = datetime.now(UTC)
        with self._db.session(write=True) as session:
            statement = dialect_insert(session, m.JournalRow).values(
                run_id=run_id,
                plan_id=plan_id,
                stage=stage,
                action_id=action_id,
                kind=kind,
                account_id=account_id,
                status=STARTED,
                intent=intent,
                attempts=1,
                started=now,
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=[m.JournalRow.plan_id, m.JournalRow.action_id],
                    set_={
                        "run_id": statement.excluded.run_id,
                        "status": STARTED,
                        "intent": statement.excluded.intent,
                        "outcome": None,
                        "error": None,
                        "attempts": m.JournalRow.attempts + 1,
                        "started": statement.excluded.started,
                        "finished": None,
                    },
                )
            )
            row = session.execute(
                select(m.JournalRow).where(
                    m.JournalRow.plan_id == plan_id, m.JournalRow.action_id == action_id
                )
            ).scalar_one()
            return _entry(row)

    def journal_progress(
        self,
        plan_id: int,
        action_id: str,
        outcome: dict[str, Any] | None = None,
        undo: dict[str, Any] | None = None,
    ) -> None:
        """Record what is known mid-action (a request id, the ARN just created), still started."""
        values: dict[str, Any] = {}
        if outcome is not None:
            values["outcome"] = outcome
        if undo is not None:
            values["undo"] = undo
        if values:
            self._update_entry(plan_id, action_id, values)

    def journal_finish(
        self,
        plan_id: int,
        action_id: str,
        status: str,
        *,
        outcome: dict[str, Any] | None = None,
        undo: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record how an action ended; ``undo`` None keeps what an earlier step recorded.

        The same transaction appends a journal event for the run the row belongs to, so the
        run's own history survives a later run re-stamping the row.
        """
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "status": status,
            "outcome": outcome,
            "error": error,
            "finished": now,
        }
        if undo is not None:
            values["undo"] = undo
        with self._db.session(write=True) as session:
            # Locked: the event names the run the row belongs to now, not before another
            # process's intent re-stamped it.
            row = session.execute(
                select(m.JournalRow)
                .where(m.JournalRow.plan_id == plan_id, m.JournalRow.action_id == action_id)
                .with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise StateError(
                    f"state DB {self._db.masked_url} has no journal row {action_id!r} "
                    f"of plan {plan_id}"
                )
            session.execute(update(m.JournalRow).where(m.JournalRow.id == row.id).values(**values))
            session.execute(
                insert(m.JournalEventRow).values(
                    run_id=row.run_id,
                    plan_id=plan_id,
                    stage=row.stage,
                    action_id=action_id,
                    kind=row.kind,
                    account_id=row.account_id,
                    status=status,
                    error=error,
                    at=now,
                )
            )

    def journal_events(self, run_id: int) -> list[JournalEvent]:
        """What one run did, action by action, in the order it happened."""
        query = (
            select(m.JournalEventRow)
            .where(m.JournalEventRow.run_id == run_id)
            .order_by(m.JournalEventRow.id)
        )
        with self._db.session(write=False) as session:
            return [
                JournalEvent(
                    run_id=row.run_id,
                    plan_id=row.plan_id,
                    stage=row.stage,
                    action_id=row.action_id,
                    kind=row.kind,
                    account_id=row.account_id,
                    status=row.status,
                    error=row.error,
                    at=row.at,
                )
                for row in session.execute(query).scalars()
            ]

    def journal_mark(self, plan_id: int, action_id: str, status: str) -> None:
        """Change only the status of a row (a forward action that a rollback undid)."""
        self._update_entry(plan_id, action_id, {"status": status})

    def journal_forget(self, plan_id: int, action_id: str) -> None:
        """Delete a row: the rollback row of an action that is applied again."""
        with self._db.session(write=True) as session:
            session.execute(
                delete(m.JournalRow).where(
                    m.JournalRow.plan_id == plan_id, m.JournalRow.action_id == action_id
                )
            )

    def _update_entry(self, plan_id: int, action_id: str, values: dict[str, Any]) -> None:
        with self._db.session(write=True) as session:
            result = session.execute(
                update(m.JournalRow)
                .where(m.JournalRow.plan_id == plan_id, m.JournalRow.action_id == action_id)
                .values(**values)
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise StateError(
                    f"state DB {self._db.masked_url} has no journal row {action_id!r} "
                    f"of plan {plan_id}"
                )
