"""The packages import one way, each on those of a lower rank (RANK): iamc on top, domain below."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A package may import only packages of a lower rank (and itself).
RANK = {
    "domain": 0,
    "state": 1,
    "scanner": 1.5,
    "tasks": 2,
    "engine": 3,
    "console": 4,
    "stages": 5,
    "flows": 6,
    "iamc": 7,
}
# Beside the library: the sandbox is a fake AWS that knows only the domain's records and
# errors; the benchmarks drive the library like the CLI does, but never the CLI itself.
BESIDE = {
    "sandbox": {"domain", "sandbox"},
    "bench": {
        "domain",
        "state",
        "scanner",
        "tasks",
        "console",
        "engine",
        "stages",
        "flows",
        "sandbox",
        "bench",
    },
}
# The CLI on top also starts the sandbox (`iamc sandbox up`, the demo, `make ui`).
ALSO = {"iamc": {"sandbox"}}
OURS = set(RANK) | set(BESIDE) | {"migrations"}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & OURS


def violations() -> list[str]:
    wrong = []
    for package in [*RANK, *BESIDE]:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path):
                if package in RANK:
                    allowed = target in RANK and RANK[target] <= RANK[package]
                    allowed = allowed or target in ALSO.get(package, set())
                else:
                    allowed = target in BESIDE[package]
                if not allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    return wrong


def test_imports_run_one_way():
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from flows.apply import apply_flow\n")
    assert imported_packages(module) == {"flows"}
