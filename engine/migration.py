"""A migration opened once at a command or flow entry: its spec, its spec file, its state DB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from domain.spec import MigrationSpec, load_spec
from state import Store

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
            SpecError: The spec is missing or invalid.
            StateError: The state DB can't be reached or upgraded.
        """
        current = _OPEN.get()
        if current is not None and current.spec_path == str(spec_path):
            yield current
            return
        spec = load_spec(spec_path)
        with Store.open(spec.state) as store:
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
