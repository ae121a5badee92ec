"""No import circle inside a package: its modules import each other one way, read from source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
# Circles we know of and mend elsewhere; each entry goes once its package is untangled (the
# test fails on an entry whose circle is gone, so a stale one cannot linger).
KNOWN_CIRCLES: dict[str, set[frozenset[str]]] = {}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_names(node: ast.Import | ast.ImportFrom, here: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may load, candidates first, most specific first."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        # A relative import counts from the importing module's package.
        anchor = here.split(".") if is_package else here.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    # `from pkg import module` loads pkg.module; `from pkg.module import name` loads pkg.module.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(package_dir: Path, root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, anywhere in its body.

    Function-level and ``if TYPE_CHECKING:`` imports count too: they tie the modules just the same.
    """
    modules = {module_name(path, root): path for path in sorted(package_dir.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported_names(node, name, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):
                # Each alias that is a module is an edge; else the statement loads `base` itself.
                *aliases, base = names
                names = [alias for alias in aliases if alias in modules] or [base]
            for target in names:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


def describe(circle: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(circle) for b in sorted(graph[a] & circle)]
    return "; ".join(edges)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_inside_a_package(package):
    graph = import_graph(ROOT / package, ROOT)
    found = set(circles(graph))
    known = KNOWN_CIRCLES.get(package, set())
    new = [describe(circle, graph) for circle in sorted(found - known, key=sorted)]
    assert new == [], f"import circles in {package}/"
    stale = [sorted(circle) for circle in known - found]
    assert stale == [], f"KNOWN_CIRCLES lists circles {package}/ no longer has: delete them"


def test_the_check_sees_a_planted_circle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.c import C\n"
    )
    (package / "sub" / "c.py").write_text("def f():\n    from ..a import g\n")
    (package / "d.py").write_text("import pkg.a\n")
    graph = import_graph(package, tmp_path)
    assert graph["pkg.d"] == {"pkg.a"}
    assert circles(graph) == [frozenset({"pkg.a", "pkg.b", "pkg.sub.c"})]
