"""A typer group whose commands are imported only when one runs; its help lists declared texts.

Each command module imports what its commands use at module level (Prefect, boto3 and
SQLAlchemy cost ~1 s), so the group imports a module only when one of its commands is invoked
(click's "Lazily Loading Subcommands"). ``--help`` lists every command from the help text the
registering module declares, importing none of them; a test keeps the texts equal to the
commands' own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group


@dataclass(frozen=True)
class Lazy:
    """Where a command lives, and the help its group lists for it.

    Attributes:
        module: The module that defines the command, e.g. ``iamc.commands.plan``.
        help: The first paragraph of the command's help, as the group's ``--help`` lists it.
        app: The module's ``typer.Typer`` that the command is registered on.
        spec_first: Whether the command validates its ``--spec`` as it parses it: then the
            group checks the spec before importing the module, so a typo is refused at once.
    """

    module: str
    help: str
    app: str = "app"
    spec_first: bool = True

    def load(self, name: str) -> Any:
        """Import the module and return the click command typer builds for ``name``."""
        typer_app = getattr(importlib.import_module(self.module), self.app)
        return get_group(typer_app).commands[name]


class _Listed(TyperCommand):
    """Stands for a command not imported yet: its name and help, for a group's help listing."""

    def __init__(self, name: str, lazy: Lazy) -> None:
        super().__init__(name=name, help=lazy.help)
        self.lazy = lazy


class LazyGroup(TyperGroup):
    """A group of commands in other modules: ``lazy`` names them in the order help lists them."""

    lazy: ClassVar[dict[str, Lazy]] = {}
    # Called with a spec-first command's arguments before its module is imported.
    check_before_import: ClassVar[Callable[[list[str]], None] | None] = None

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands.update({name: _Listed(name, lazy) for name, lazy in self.lazy.items()})
        self._listing = False

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Listed) and not self._listing:
            command = self.commands[cmd_name] = command.lazy.load(cmd_name)
        return command

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        listed = self.commands.get(args[0]) if args else None
        check = type(self).check_before_import
        if isinstance(listed, _Listed) and listed.lazy.spec_first and check is not None:
            check(args[1:])
        return super().resolve_command(ctx, args)

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        # Listing the commands needs only their names and help: import none of them.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
