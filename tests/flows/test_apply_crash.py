"""Crash tests: the provision stage killed at every step boundary, then resumed.

For each action and each boundary (after its intent is recorded; after its AWS call, before
its outcome is recorded) the run dies there; a resume must end in exactly the state of an
uninterrupted run, without sending any create twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain.plan import Stage
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash, parse_fault
from engine.migration import Migration
from engine.reports import load_plan
from state import Store

ACTIONS = 9  # 2 permission sets, 3 provisionings, 4 assignments
_baseline: dict[str, Any] = {}


@pytest.fixture
def baseline(clean, kit, tmp_path: Path) -> dict[str, Any]:
    """The end state of an uninterrupted run (computed once), Identity Center empty again."""
    if not _baseline:
        (tmp_path / "baseline").mkdir()
        spec, plan_id = kit.write_approved_plan(clean, tmp_path / "baseline")
        summary = apply_plan(spec, plan_id, poll=kit.QUICK)
        assert summary["succeeded"] == ACTIONS and summary["pending"] == 0
        _baseline.update(kit.live_state(clean))
        kit.wipe(clean)
    return _baseline


@pytest.mark.parametrize("point", [AFTER_INTENT, AFTER_CALL])
@pytest.mark.parametrize("index", range(ACTIONS))
def test_a_crash_at_any_step_boundary_resumes_to_the_same_end_state(
    clean, kit, baseline, tmp_path: Path, index: int, point: str
):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    actions = [a for a in plan.actions if a.stage == Stage.PROVISION]
    assert len(actions) == ACTIONS
    victim = actions[index]

    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, fault=(victim.id, point), poll=kit.QUICK)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        crashed = store.journal.journal_entry(plan_id, victim.id)
        run_id = next(r.id for r in store.runs.list_runs() if r.kind == "apply")
    # The intent was committed before the call; the outcome never was.
    assert crashed is not None and crashed.status == "started" and crashed.finished is None

    summary = apply_plan(spec, plan_id, resume_run_id=run_id, poll=kit.QUICK)

    assert summary["run_id"] == run_id
    assert summary["succeeded"] == ACTIONS, summary
    assert kit.live_state(clean) == baseline
    count = kit.calls(clean)
    assert count("CreatePermissionSet") == 2
    assert count("CreateAccountAssignment") == 4
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        resumed = store.journal.journal_entry(plan_id, victim.id)
    assert resumed is not None and resumed.status == "succeeded"
    assert resumed.intent["existed_before"] is False  # ours: rollback will undo it


def test_fault_hook_is_parsed_from_the_environment_form():
    assert parse_fault("provision:create-permission-set:Admins:after-call") == (
        "provision:create-permission-set:Admins",
        AFTER_CALL,
    )
    assert parse_fault(None) is None
    with pytest.raises(ValueError, match="ACTION_ID"):
        parse_fault("provision:x:during")
