"""`iamc --help` lists every command from declared help; a command's module loads to run it."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest
import typer

from iamc.cli import COMMANDS, _spec_argument
from iamc.commands.report import REPORTS


@pytest.mark.parametrize(
    ("name", "lazy"),
    [*COMMANDS.items(), *(("report " + n, lazy) for n, lazy in REPORTS.items())],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_declared_help_is_the_commands_own(name: str, lazy) -> None:
    command = lazy.load(name.split()[-1])
    own = inspect.cleandoc(command.help or "").split("\n\n")[0].strip()
    assert lazy.help == own


def test_help_imports_no_command_module() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "iamc.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert all(name in done.stdout for name in COMMANDS)
    loaded = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert not [m for m in loaded if m.startswith(("iamc.commands.", "iamc.views"))]


def test_every_command_of_a_module_is_registered() -> None:
    registered = {(lazy.module, lazy.app, name) for name, lazy in COMMANDS.items()}
    registered |= {(lazy.module, lazy.app, name) for name, lazy in REPORTS.items()}
    for module, app in {(m, a) for m, a, _ in registered}:
        group = typer.main.get_group(getattr(importlib.import_module(module), app))
        assert {(module, app, n) for n in group.commands} <= registered


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        (["1", "-c", "s.toml"], "s.toml"),
        (["--spec", "s.toml", "--by", "x"], "s.toml"),
        (["--spec=s.toml"], "s.toml"),
        (["-cs.toml"], "s.toml"),
        (["show", "1"], None),
        (["--", "-c", "s.toml"], None),
    ],
)
def test_the_spec_is_found_as_click_reads_it(args: list[str], spec: str | None) -> None:
    assert _spec_argument(args) == spec
