"""The store: the one API through which iamc records migrations, runs, snapshots and findings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import configure_mappers

from domain.errors import StateError
from state.account_results import AccountResultRepository
from state.engine import (
    code_head,
    current_revisions,
    make_engine,
    mask_url,
    upgrade_locked,
    upgrade_to_head,
)
from state.identity import IdentityRepository
from state.journal import JournalRepository
from state.key_scans import KeyScanRepository
from state.migrations import MigrationRepository
from state.notice_mail import NoticeMailRepository
from state.plans import PlanRepository
from state.runs import LeaseRepository, RunRepository
from state.session import Sessions, reason
from state.snapshots import SnapshotRepository
from state.usage import UsageRepository
from state.user_snapshots import RetireRepository
from state.waves import WavesRepository
from state.workloads import WorkloadsRepository

log = logging.getLogger(__name__)


class Store:
    """The state DB, upgraded to this code's schema; safe to share between threads.

    One repository per aggregate: ``store.migrations``, ``store.runs``, ``store.leases``,
    ``store.snapshots``, ``store.identity`` (mappings), ``store.plans`` (and approvals),
    ``store.journal``, ``store.scans`` (key scans), ``store.waves`` and ``store.retired``
    (user snapshots, use evidence, bake decisions), ``store.workloads`` (placements),
    ``store.usage`` (usage reads), ``store.mail`` (the notices' mail journal),
    ``store.account_results`` (child flow runs' reports). Each call runs in its own session
    and transaction, so the inventory's per-account tasks may save accounts concurrently.
    """

    def __init__(self, engine: Engine):
        """Wrap an engine whose schema is already at head; use :meth:`open` instead."""
        self._engine = engine
        db = Sessions(engine)
        self.migrations = MigrationRepository(db)
        self.runs = RunRepository(db)
        self.leases = LeaseRepository(db)
        self.snapshots = SnapshotRepository(db)
        self.identity = IdentityRepository(db)
        self.plans = PlanRepository(db)
        self.journal = JournalRepository(db)
        self.scans = KeyScanRepository(db)
        self.waves = WavesRepository(db, self.runs)
        self.retired = RetireRepository(db)
        self.workloads = WorkloadsRepository(db)
        self.usage = UsageRepository(db)
        self.mail = NoticeMailRepository(db)
        self.account_results = AccountResultRepository(db)

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
        with _engine(url, keep=True) as engine:
            upgrade_to_head(engine)
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
def _engine(url: str, *, keep: bool = False) -> Iterator[Engine]:
    """An engine for ``url``, disposed when the block fails (or ends, unless ``keep``); the
    driver's errors become one StateError line naming the URL, password masked."""
    engine: Engine | None = None
    try:
        engine = make_engine(url)
        yield engine
    except StateError:
        if engine is not None:
            engine.dispose()
        raise
    except (SQLAlchemyError, OSError, ImportError) as err:
        if engine is not None:
            engine.dispose()
        raise StateError(f"cannot open state DB {mask_url(url)}: {reason(err)}") from err
    if not keep:
        engine.dispose()


def upgrade_schema(url: str) -> tuple[tuple[str, ...], str]:
    """Upgrade the state DB at ``url`` to this code's schema, once however many run it at once.

    PostgreSQL: under an advisory lock; SQLite: under its write lock (``upgrade_locked``).

    Returns:
        (the revisions it was at, empty for a new DB; the head it is at now).

    Raises:
        StateError: The DB can't be reached or upgraded, or is newer than this code.
    """
    with _engine(url) as engine:
        return upgrade_locked(engine)


def schema_revisions(url: str) -> tuple[tuple[str, ...], str]:
    """(the revisions the state DB at ``url`` is at, empty when none; this code's head).

    Raises:
        StateError: The DB can't be reached.
    """
    with _engine(url) as engine:
        with engine.connect():
            pass  # an unreachable DB is an error here, not "no revision"
        return current_revisions(engine), code_head()


def warm_up_models() -> threading.Thread:
    """Configure the ORM's mappers in a background thread (SQLAlchemy does it on first use).

    ~40 ms of CPU a process pays on its first query; a command that starts this before it
    waits on the network takes it off its critical path. ``configure_mappers`` holds
    SQLAlchemy's own lock, so a query made meanwhile waits for it rather than repeating it.
    """
    thread = threading.Thread(target=configure_mappers, name="iamc-warm-up-models", daemon=True)
    thread.start()
    return thread
