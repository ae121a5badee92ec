"""The README and the runbooks name only deployments that `iamc serve` serves, as it names them.

Operators type what the docs say: a runbook that says `5 apply` where `05 plan-and-approve` is
served sends them to the wrong step (issue 23).
"""

from __future__ import annotations

import re
from pathlib import Path

from console.operator import RUNBOOK

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "runbooks").glob("*.md"))]
SPEC = 'name = "acme"\nstate = "sqlite:///state.db"\n'

_STEPS = "|".join(re.escape(step) for step in sorted(RUNBOOK, key=len, reverse=True))
# A runbook step after a number (`5 apply`, "06 apply (acme)"), and anything numbered like a
# deployment in backticks (`3 bake`): a step name that is not served is caught too.
NAMED = re.compile(rf"(?<![\w.-])(\d{{1,2}}) ({_STEPS})(?![\w-])")
QUOTED = re.compile(r"`(\d{1,2}) ([a-z][a-z-]*)(?: \([^`)]*\))?`")


def named_deployments(text: str) -> list[tuple[int, str]]:
    """(line, "N step") for every deployment the text names, in order."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        names = {f"{m[1]} {m[2]}" for m in NAMED.finditer(line)}
        names |= {f"{m[1]} {m[2]}" for m in QUOTED.finditer(line)}
        found += [(number, name) for name in sorted(names)]
    return found


def _served(tmp_path: Path) -> set[str]:
    from iamc.serve import deployments

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    return {d.name.removesuffix(" (acme)") for d in deployments(spec)}


def test_the_docs_name_only_served_deployments(tmp_path: Path):
    served = _served(tmp_path)
    assert "08 apply" in served and "13 restore" in served
    named = {
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in DOCS
        for line, name in named_deployments(path.read_text())
    }
    assert named, "the docs name no deployment: the parse is broken"
    assert sorted(n for n in named if n.rsplit(": ", 1)[1] not in served) == []


def test_the_check_sees_a_wrong_number_and_an_unknown_step():
    text = (
        "Run `5 apply` (leave plan_id empty), then '06 apply (acme)',\n"
        "`4 plan-and-approve`, `3 bake` and 12 users in 3 accounts."
    )
    assert named_deployments(text) == [
        (1, "06 apply"),
        (1, "5 apply"),
        (2, "3 bake"),
        (2, "4 plan-and-approve"),
    ]
