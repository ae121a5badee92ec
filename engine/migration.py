"""A migration opened once at a command or flow entry: its spec, its spec file, its state DB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from domain.distribution import step_run_tag, work_pool
from domain.errors import SpecError
from domain.spec import MigrationSpec, key_lines, load_spec
from engine.prefect_runtime import subflow_runs_tagged
from state import Store
from state.engine import backend_name, mask_url
from state.store import schema_revisions, upgrade_schema

P = ParamSpec("P")
R = TypeVar("R")

# The migration open in this context (a command, a flow run and the tasks it starts).
_OPEN: ContextVar[Migration | None] = ContextVar("iamc_open_migration", default=None)


@dataclass(frozen=True)
class Migration:
    """What every step of one migration works on, handed down instead of re-opened.

    A command or a flow entry opens it once (:meth:`open`); nothing below it loads the spec
    or opens the store again (cloud-custodian's ``policy_command`` loads policies once).
    """

    spec: MigrationSpec
    spec_path: str  # as the operator named it: what hints such as ``iamc resume N -c`` quote
    store: Store

    @property
    def directory(self) -> Path:
        """The spec's directory: relative paths of the spec (plans, notices) are under it."""
        return Path(self.spec_path).resolve().parent

    @classmethod
    @contextmanager
    def open(cls, spec_path: str | Path) -> Iterator[Migration]:
        """Load the spec and open its state DB for the length of one command or flow run.

        Inside an open migration of the same spec (the flow's entry, a command), the open one
        is handed on instead: a flow run loads its spec and opens its store once, however many
        of its parts (the work, its artifacts, its failure message) ask for the migration.

        Raises:
            SpecError: The spec is missing or invalid, or its state DB is SQLite in a flow
                run of a work pool (``require_shared_state``).
            StateError: The state DB can't be reached or upgraded.
        """
        current = _OPEN.get()
        if current is not None and current.spec_path == str(spec_path):
            yield current
            return
        spec = load_spec(spec_path)
        require_shared_state(spec_path, spec.state, work_pool())
        with Store.open(spec.state) as store, subflow_runs_tagged(step_run_tag(spec.name)):
            mig = cls(spec=spec, spec_path=str(spec_path), store=store)
            token = _OPEN.set(mig)
            try:
                yield mig
            finally:
                _OPEN.reset(token)

    @classmethod
    def spec_of(cls, spec_path: str | Path) -> MigrationSpec:
        """The spec of the migration open in this context for ``spec_path``; loaded if none is.

        Raises:
            SpecError: No migration is open and the spec is missing or invalid.
        """
        current = _OPEN.get()
        if current is not None and current.spec_path == str(spec_path):
            return current.spec
        return load_spec(spec_path)

    @classmethod
    def call(
        cls,
        fn: Callable[Concatenate[Migration, P], R],
        spec_path: str | Path,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """``fn(migration, *args, **kwargs)`` with the migration opened for that one call.

        For an entry that does one thing, e.g. ``Migration.call(load_plan, spec_path, 7)``.
        """
        with cls.open(spec_path) as mig:
            return fn(mig, *args, **kwargs)

    def hint(self, command: str) -> str:
        """An ``iamc`` command line for this migration, e.g. ``hint("resume 7")``."""
        return f"iamc {command} -c {self.spec_path}"


def require_shared_state(spec_path: str | Path, state_url: str, pool: str | None) -> None:
    """Refuse a state DB that the workers of a work pool can't share: only PostgreSQL.

    A flow run on a work pool opens its migration through this (``Migration.open``), and
    ``iamc deploy`` calls it before registering deployments on a pool.

    Args:
        spec_path: The spec, named in the error with the line of its ``state``.
        state_url: The spec's ``state``.
        pool: The work pool (``domain.distribution.work_pool()`` in a flow run, the
            deployment's pool in ``iamc deploy``); None: one process, anything goes.

    Raises:
        SpecError: With a pool, a state DB other than PostgreSQL; one line saying why and
            what to set.
    """
    if pool is None:
        return
    backend = backend_name(state_url)
    if backend == "postgresql":
        return
    why = (
        "a SQLite file is one machine's"
        if backend == "sqlite"
        else f"only PostgreSQL's row and advisory locks keep them apart, not {backend}'s"
    )
    try:
        lines = (
            {"state": line} if (line := key_lines(Path(spec_path).read_text()).get("state")) else {}
        )
    except (OSError, UnicodeDecodeError):
        lines = {}
    raise SpecError(
        str(spec_path),
        [
            (
                "state",
                f"{mask_url(state_url)} can't serve work pool {pool!r}: its flows run on "
                f"several workers on several machines that write the state DB at once, and "
                f'{why}; set state = "postgresql+psycopg://USER@HOST/DB" in the spec, then '
                f"run 'iamc db upgrade -c {spec_path}' once",
            )
        ],
        lines,
    )


def upgrade_state_db(spec_path: str | Path) -> tuple[str, tuple[str, ...], str]:
    """Upgrade the spec's state DB to this iamc's schema (``iamc db upgrade``), once.

    Several at once are safe: one runs the DDL under the DB's upgrade lock (PostgreSQL's
    advisory lock, SQLite's write lock), the others find it at head.

    Returns:
        (the URL, password masked; the revisions it was at, empty for a new DB; the head).

    Raises:
        SpecError: The spec is missing or invalid.
        StateError: The DB can't be reached or upgraded, or is newer than this iamc.
    """
    spec = Migration.spec_of(spec_path)
    before, head = upgrade_schema(spec.state)
    return mask_url(spec.state), before, head


def state_db_revisions(spec_path: str | Path) -> tuple[str, tuple[str, ...], str]:
    """(The spec's state DB URL, password masked; its revisions; this iamc's head), unchanged.

    Raises:
        SpecError: The spec is missing or invalid.
        StateError: The DB can't be reached.
    """
    spec = Migration.spec_of(spec_path)
    current, head = schema_revisions(spec.state)
    return mask_url(spec.state), current, head
