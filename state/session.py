"""The state DB's sessions: one transaction per call, writers queued, shared by every repository."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from domain.errors import StateError
from state.engine import sqlite_write_lock


class Sessions:
    """Opens the sessions every repository of a :class:`state.Store` works in."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.masked_url = engine.url.render_as_string(hide_password=True)
        # SQLite takes its write lock at BEGIN (see state.engine) and, within this process,
        # writers queue on a lock rather than on busy_timeout.
        self._write_engine = engine.execution_options(sqlite_immediate=True)
        self._write_lock = sqlite_write_lock(engine)
        # An in-memory SQLite DB is one shared connection: readers must queue too.
        in_memory = engine.dialect.name == "sqlite" and not engine.url.database
        in_memory = in_memory or engine.url.database == ":memory:"
        self._read_lock = self._write_lock if in_memory else None

    @contextmanager
    def session(self, *, write: bool) -> Iterator[Session]:
        """One session in one transaction, committed when the block ends without an error.

        Raises:
            StateError: The DB answered an error; the message names the URL, password masked.
        """
        lock = self._write_lock if write else self._read_lock
        try:
            with (
                lock or nullcontext(),
                Session(self._write_engine if write else self.engine) as session,
                session.begin(),
            ):
                yield session
        except SQLAlchemyError as err:
            raise StateError(f"state DB {self.masked_url}: {reason(err)}") from err

    def retrying_on_conflict(self, work: Callable[[Session], Any]) -> Any:
        """``work(session)`` in a write transaction, once more if it lost an insert race."""
        # Two PostgreSQL workers may insert the same unique key at once; the loser retries
        # and then sees the winner's row.
        for attempt in (1, 2):
            try:
                with self.session(write=True) as session:
                    return work(session)
            except StateError as err:
                if attempt == 2 or not isinstance(err.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")


# pg_advisory_xact_lock(namespace, key): iamc's row-group locks, apart from other users' locks
# and from the one-key schema upgrade lock (state.engine).
_PG_LOCK_NAMESPACE = 0x69616D63


def lock_group(session: Session, *parts: object) -> None:
    """Hold, to the end of the transaction, the lock of one group of rows named by ``parts``.

    For a read-then-insert whose rows have no unique key to conflict on (a user's snapshot
    versions, an account's rows in a snapshot): processes doing it to the same group queue
    here, so each reads what the one before it wrote. PostgreSQL: a transaction-level
    advisory lock (a hash collision only makes two groups queue together). SQLite: nothing
    to do, a write transaction holds the whole file (``BEGIN IMMEDIATE``).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = ":".join(str(part) for part in parts)
    session.execute(select(func.pg_advisory_xact_lock(_PG_LOCK_NAMESPACE, func.hashtext(key))))


def dialect_insert(session: Session, model: Any) -> Any:
    """``INSERT`` for the session's database with its ``ON CONFLICT`` clauses (PostgreSQL and
    SQLite both have ``on_conflict_do_nothing`` / ``on_conflict_do_update``)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


def db_now(session: Session) -> datetime:
    """The time by the database's clock (PostgreSQL), or this machine's (SQLite).

    Workers on several machines compare each other's lease heartbeats: one clock, the
    database server's, keeps a machine whose clock runs ahead from taking a live lease.
    ``clock_timestamp()``, not ``now()``: the moment of the call, not of the transaction's
    start (which may have waited for a row lock).
    """
    if session.get_bind().dialect.name == "postgresql":
        value = session.execute(select(func.clock_timestamp())).scalar_one()
        return value.astimezone(UTC)
    return datetime.now(UTC)


def reason(err: BaseException) -> str:
    """The driver's own line of a database error."""
    # SQLAlchemy's message appends the SQL and a docs link; the driver's own line is enough.
    orig = getattr(err, "orig", None)
    return str(orig if orig is not None else err).strip().splitlines()[0]
