"""The store: the one API through which iamc records migrations, runs, snapshots and findings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, configure_mappers

from domain.errors import StateError
from state import models as m
from state.engine import make_engine, mask_url, sqlite_write_lock, upgrade_to_head
from state.identity import IdentityMixin
from state.journal import JournalMixin
from state.key_scans import KeyScanMixin
from state.plans import PlanMixin
from state.runs import RunsMixin, StageLockMixin
from state.snapshots import SnapshotMixin
from state.user_snapshots import RetireMixin
from state.waves import WavesMixin

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class Store(
    RunsMixin,
    StageLockMixin,
    SnapshotMixin,
    IdentityMixin,
    PlanMixin,
    JournalMixin,
    KeyScanMixin,
    WavesMixin,
    RetireMixin,
):
    """The state DB, upgraded to this code's schema; safe to share between threads.

    Each call runs in its own session and transaction, so the inventory's per-account tasks
    may call :meth:`save_account_inventory` concurrently.
    """

    def __init__(self, engine: Engine):
        """Wrap an engine whose schema is already at head; use :meth:`open` instead."""
        self._engine = engine
        self._masked_url = engine.url.render_as_string(hide_password=True)
        # SQLite takes its write lock at BEGIN (see state.engine) and, within this process,
        # writers queue on a lock rather than on busy_timeout.
        self._write_engine = engine.execution_options(sqlite_immediate=True)
        self._write_lock = sqlite_write_lock(engine)
        # An in-memory SQLite DB is one shared connection: readers must queue too.
        in_memory = engine.dialect.name == "sqlite" and not engine.url.database
        in_memory = in_memory or engine.url.database == ":memory:"
        self._read_lock = self._write_lock if in_memory else None

    @classmethod
    def open(cls, url: str) -> Store:
        """Open the state DB at ``url``, creating or upgrading its schema to head.

        Args:
            url: A SQLAlchemy URL: ``sqlite:///path/state.db`` (its directory is created) or
                e.g. ``postgresql+psycopg://user@host/db`` for several workers.

        Returns:
            The open store.

        Raises:
            StateError: The DB can't be reached or upgraded, or is newer than this code;
                the message names the URL with its password masked.
        """
        masked = mask_url(url)
        engine: Engine | None = None
        try:
            engine = make_engine(url)
            upgrade_to_head(engine)
        except StateError:
            if engine is not None:
                engine.dispose()
            raise
        except (SQLAlchemyError, OSError, ImportError) as err:
            if engine is not None:
                engine.dispose()
            raise StateError(f"cannot open state DB {masked}: {_reason(err)}") from err
        return cls(engine)

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Session]:
        lock = self._write_lock if write else self._read_lock
        try:
            with (
                lock or nullcontext(),
                Session(self._write_engine if write else self._engine) as session,
                session.begin(),
            ):
                yield session
        except SQLAlchemyError as err:
            raise StateError(f"state DB {self._masked_url}: {_reason(err)}") from err

    def _retrying_on_conflict(self, work: Callable[[Session], Any]) -> Any:
        # Two PostgreSQL workers may insert the same unique key at once; the loser retries
        # and then sees the winner's row.
        for attempt in (1, 2):
            try:
                with self._session(write=True) as session:
                    return work(session)
            except StateError as err:
                if attempt == 2 or not isinstance(err.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")

    # Migrations and runs

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
            now = _now()
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

        return self._retrying_on_conflict(work)


def warm_up_models() -> threading.Thread:
    """Configure the ORM's mappers in a background thread (SQLAlchemy does it on first use).

    ~40 ms of CPU a process pays on its first query; a command that starts this before it
    waits on the network takes it off its critical path. ``configure_mappers`` holds
    SQLAlchemy's own lock, so a query made meanwhile waits for it rather than repeating it.
    """
    thread = threading.Thread(target=configure_mappers, name="iamc-warm-up-models", daemon=True)
    thread.start()
    return thread


def _reason(err: BaseException) -> str:
    # SQLAlchemy's message appends the SQL and a docs link; the driver's own line is enough.
    orig = getattr(err, "orig", None)
    return str(orig if orig is not None else err).strip().splitlines()[0]
