"""Engines for the state DB (SQLite tuned for threads, any other URL as is) and its upgrades."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from domain.errors import StateError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

# Seconds a SQLite writer waits for another's lock before giving up (sqlite3 "timeout").
SQLITE_BUSY_TIMEOUT = 30
# pg_advisory_xact_lock key that serialises schema upgrades of one PostgreSQL database
# ("iamc" in ASCII), so two workers opening at once don't both run the DDL.
_PG_UPGRADE_LOCK = 0x69616D63

# Alembic's ``context`` and ``op`` are module-level proxies: two threads of one process must
# never run migrations at once, whatever the database's own locks do.
_upgrade_lock = threading.Lock()

# Writers to one SQLite file, per process: SQLite allows one writer at a time, and queueing
# threads on a lock is fairer and quicker than letting them spin on SQLITE_BUSY.
_sqlite_write_locks: dict[str, threading.Lock] = {}
_sqlite_write_locks_guard = threading.Lock()


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages and logs.

    Args:
        url: A SQLAlchemy URL, possibly unparsable.

    Returns:
        The URL safe to print.
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def migrations_dir() -> Path:
    """Return the directory of the ``migrations`` package (Alembic's script location).

    Raises:
        StateError: The package is not installed alongside iamc.
    """
    # find_spec rather than __file__: an editable install may expose the package as a
    # namespace package, which has search locations but no __file__.
    spec = importlib.util.find_spec("migrations")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "env.py").is_file():
            return Path(location).resolve()
    raise StateError("the 'migrations' package of iamc is missing; reinstall iamc")


def alembic_config(connection: Connection | None = None) -> Config:
    """Build the Alembic configuration in code; no alembic.ini is needed at runtime.

    Args:
        connection: If given, ``migrations/env.py`` runs the migrations on it.

    Returns:
        The configuration.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def sqlite_write_lock(engine: Engine) -> threading.Lock | None:
    """Return this process's write lock for a SQLite engine's file, or None for other backends.

    Args:
        engine: An engine from :func:`make_engine`.

    Returns:
        A lock shared by every engine of the same file in this process.
    """
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ":memory:"
    # Each in-memory engine is its own database; files are keyed by their real path.
    key = f":memory:{id(engine)}" if database == ":memory:" else str(Path(database).resolve())
    with _sqlite_write_locks_guard:
        return _sqlite_write_locks.setdefault(key, threading.Lock())


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, create the file's directory and enable WAL and FKs.

    Args:
        url: A SQLAlchemy URL, e.g. ``sqlite:///.iamc/state.db`` or
            ``postgresql+psycopg://user@host/db``.

    Returns:
        The engine.

    Raises:
        ArgumentError: The URL is malformed (the caller wraps it in ``StateError``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, json_serializer=_json_dumps, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    options: dict[str, Any] = {
        "json_serializer": _json_dumps,
        "connect_args": {"timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False},
    }
    if in_memory:
        # One shared connection, or each thread would see its own empty database.
        options["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite, which would BEGIN lazily before the first
        # write and so make read-then-write transactions fail with SQLITE_BUSY instead of
        # waiting; the "begin" hook below issues BEGIN itself (SQLAlchemy pysqlite docs,
        # "Serializable isolation / Savepoints / Transactional DDL").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL is durable across application crashes, only not power loss.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock up front (IMMEDIATE) so it queues behind other
        # writers under busy_timeout rather than failing when it upgrades a read lock.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_REVISION_LINE = re.compile(r'^(revision|down_revision)\b[^=]*=\s*"?([0-9A-Za-z_]+|None)"?', re.M)
_code_head: str | None = None


def code_head() -> str:
    """The head revision of this code's migrations, read from the revision files' text.

    Cheaper than Alembic's script directory (which imports every revision); the schema
    tests check that it agrees with Alembic's head.

    Raises:
        StateError: The revisions do not form one line ending in exactly one head.
    """
    global _code_head
    if _code_head is None:
        revisions, parents = set(), set()
        for path in (migrations_dir() / "versions").glob("*.py"):
            found = dict(_REVISION_LINE.findall(path.read_text()))
            if "revision" in found:
                revisions.add(found["revision"])
                parents.add(found.get("down_revision"))
        heads = sorted(revisions - parents)
        if len(heads) != 1:
            raise StateError(f"the state DB migrations have {len(heads)} heads: {heads}")
        _code_head = heads[0]
    return _code_head


def backend_name(url: str) -> str:
    """The database kind of a state URL: ``sqlite``, ``postgresql``, ...

    Raises:
        StateError: The URL is malformed.
    """
    try:
        return make_url(url).get_backend_name()
    except (ArgumentError, ValueError) as err:
        raise StateError(f"state DB URL {mask_url(url)} is malformed: {err}") from err


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The DB's Alembic revisions, read with plain SQL; empty if it has none yet."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version"))
            return tuple(sorted(row[0] for row in rows))
    except SQLAlchemyError:
        return ()


def upgrade_to_head(engine: Engine) -> str:
    """Upgrade the schema to this code's head, refusing a DB newer than the code.

    Only one process upgrades at a time: PostgreSQL takes a transaction-level advisory lock,
    SQLite a ``BEGIN IMMEDIATE`` write lock; whoever comes second finds the DB at head.
    Within a process a lock also serialises openers, as Alembic's proxies are global.

    Args:
        engine: An engine from :func:`make_engine`.

    Returns:
        The head revision the DB is now at.

    Raises:
        StateError: The DB is at a revision this code does not know.
    """
    head = code_head()
    if current_revisions(engine) == (head,):
        # At head already, the common case: no Alembic import, no DDL lock (~0.5 s saved on
        # every command; the advisory lock and Alembic run only when an upgrade is due).
        return head
    return upgrade_locked(engine)[1]


def upgrade_locked(engine: Engine) -> tuple[tuple[str, ...], str]:
    """Upgrade the schema to head under the DB's upgrade lock, whatever revision it reads.

    The revisions are read again once the lock is held: of several processes upgrading at
    once, one runs the DDL and the others find the DB at head and change nothing.

    Args:
        engine: An engine from :func:`make_engine`.

    Returns:
        (the revisions the DB was at when the lock was taken, empty for a new DB; the head).

    Raises:
        StateError: The DB is at a revision this code does not know, or the upgrade failed.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    known = {revision.revision for revision in script.walk_revisions()}
    with (
        _upgrade_lock,
        engine.connect().execution_options(sqlite_immediate=True) as connection,
        connection.begin(),
    ):
        if engine.dialect.name == "postgresql":
            # Held to the end of this transaction, which holds the DDL and the new revision.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK}
            )
        current = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
        unknown = [revision for revision in current if revision not in known]
        if unknown:
            raise StateError(
                f"state DB {mask_url(str(engine.url))} is at revision {', '.join(unknown)}, "
                "newer than this iamc knows; upgrade iamc"
            )
        if current != (head,):
            log.info("upgrading state DB from %s to %s", current or "empty", head)
            try:
                command.upgrade(alembic_config(connection), "head")
            except CommandError as err:
                raise StateError(
                    f"cannot upgrade state DB {mask_url(str(engine.url))}: {err}"
                ) from err
    return current, head
