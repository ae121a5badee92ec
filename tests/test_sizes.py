"""Modules stay within 600 lines and functions within 80, so each reads as what its name says.

Renderers (a document written out line by line) and Alembic migrations are the exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "domain",
    "state",
    "scanner",
    "tasks",
    "engine",
    "console",
    "stages",
    "flows",
    "iamc",
    "sandbox",
    "bench",
)
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Renderers: one document each, top to bottom; splitting them would scatter one page.
RENDERERS = {"domain/plan_render.py:render_markdown", "domain/key_report.py:render_sarif"}


def oversized(root: Path) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            name = path.relative_to(root).as_posix()
            if text.count("\n") > MAX_MODULE_LINES:
                found.append(f"{name}: {text.count(chr(10))} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    size = (node.end_lineno or node.lineno) - node.lineno + 1
                    if size > MAX_FUNCTION_LINES and f"{name}:{node.name}" not in RENDERERS:
                        found.append(f"{name}:{node.name}: {size} lines")
    return found


def test_no_module_or_function_is_oversized():
    assert oversized(ROOT) == []


def test_the_check_sees_an_oversized_function(tmp_path):
    (tmp_path / "domain").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "domain" / "long.py").write_text(f"def long():\n{body}\n")
    assert oversized(tmp_path) == ["domain/long.py:long: 81 lines"]
