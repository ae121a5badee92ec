"""Crash tests: the disable and delete stages killed at every step boundary, then resumed.

For each action and each boundary (after its intent is recorded; after its AWS call, before
its outcome is recorded) the run dies there; a resume must end in the state of an
uninterrupted run, sending no mutation twice.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.plan import Stage
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.migration import Migration
from engine.reports import load_plan
from state import Store

LATER = datetime.now(UTC) + timedelta(days=15)
MUTATING = (
    "Update",
    "Put",
    "Delete",
    "Detach",
    "Remove",
    "Deactivate",
)
DISABLE_ACTIONS = 7  # jane: quarantine, key, SSH key, certificate, service credential; bob: 2
DELETE_ACTIONS = 11  # jane: snapshot, then ten teardown rows (no boundary)
_baselines: dict[str, dict[str, Any]] = {}
# The delete stage's reference check reads each account's resource policies in every enabled
# region (17 in the sandbox, six services each): most of a delete run's time, and the same for
# every boundary. Which regions are read is not what a crash test is about (tests of
# tasks/resource_policies.py and test_retire_delete.py read them all), so one region here.
ONE_REGION = 'reference_regions = ["us-east-1"]\n'


def later() -> datetime:
    return LATER


def _seed(world, kit, prefix: str, *, with_bob: bool) -> None:
    a1, a2 = world.accounts
    kit.seed_user(
        world,
        a1,
        f"{prefix}jane",
        keys=1,
        inactive_keys=1,
        ssh=True,
        cert=True,
        service_credential=True,
        password=True,
        mfa=True,
        inline=True,
        managed=True,
        group="crash-devs",
    )
    if with_bob:
        kit.seed_user(world, a2, f"{prefix}bob", keys=1)


def _shape(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The IAM state with the test's prefix and credential ids taken out."""
    return {
        key.split("/", 1)[1].removeprefix(prefix): {
            name: sorted(status for _, status in value)
            if name in ("keys", "ssh", "certs", "service")
            else value
            for name, value in user.items()
            if name != "mfa"
        }
        | {"mfa": len(user["mfa"])}
        for key, user in state.items()
    }


def _mutations(world) -> dict[str, int]:
    calls = world.control.calls()["calls"]
    return {
        key: count
        for key, count in calls.items()
        if key.startswith("iam:") and key.split(":", 1)[1].startswith(MUTATING)
    }


def _prepare(clean, kit, tmp_path: Path, stage: str) -> tuple[str, Path, int]:
    prefix = f"c{uuid.uuid4().hex[:6]}-"
    _seed(clean, kit, prefix, with_bob=stage == Stage.DISABLE)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix, decommission=ONE_REGION)
    if stage == Stage.DELETE:
        apply_plan(spec, plan_id, "disable")
    clean.control.reset_calls()
    return prefix, spec, plan_id


def _baseline(clean, kit, tmp_path: Path, stage: str) -> dict[str, Any]:
    if stage not in _baselines:
        (tmp_path / "baseline").mkdir()
        prefix, spec, plan_id = _prepare(clean, kit, tmp_path / "baseline", stage)
        summary = apply_plan(spec, plan_id, stage, clock=later)
        assert summary["failed"] == summary["pending"] == 0, summary
        _baselines[stage] = {
            "state": _shape(kit.iam_state(clean, prefix), prefix),
            "mutations": _mutations(clean),
        }
    return _baselines[stage]


def _crash_and_resume(clean, kit, tmp_path: Path, stage: str, index: int, point: str) -> None:
    baseline = _baseline(clean, kit, tmp_path, stage)
    prefix, spec, plan_id = _prepare(clean, kit, tmp_path, stage)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    actions = [a for a in plan.actions if a.stage == stage]
    assert len(actions) == (DISABLE_ACTIONS if stage == Stage.DISABLE else DELETE_ACTIONS)
    victim = actions[index]

    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, stage, fault=(victim.id, point), clock=later)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        crashed = store.journal.journal_entry(plan_id, victim.id)
        run_id = [r.id for r in store.runs.list_runs() if r.kind == "apply"][-1]
    assert crashed is not None and crashed.status == "started" and crashed.finished is None

    summary = apply_plan(spec, plan_id, stage, resume_run_id=run_id, clock=later)

    assert summary["run_id"] == run_id
    assert summary["failed"] == summary["pending"] == 0, summary
    assert _shape(kit.iam_state(clean, prefix), prefix) == baseline["state"]
    assert _mutations(clean) == baseline["mutations"]  # nothing sent twice
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        resumed = store.journal.journal_entry(plan_id, victim.id)
        if stage == Stage.DELETE:
            snapshots = store.retired.user_snapshots(store.migrations.find_migration("wave-1"))
            assert [s.user_name for s in snapshots] == [f"{prefix}jane"]
    assert resumed is not None and resumed.done


@pytest.mark.parametrize("point", [AFTER_INTENT, AFTER_CALL])
@pytest.mark.parametrize("index", range(DISABLE_ACTIONS))
def test_disable_crashed_at_any_step_boundary_resumes_to_the_same_end_state(
    clean, retire_kit, tmp_path: Path, index: int, point: str
):
    _crash_and_resume(clean, retire_kit, tmp_path, Stage.DISABLE, index, point)


@pytest.mark.parametrize("point", [AFTER_INTENT, AFTER_CALL])
@pytest.mark.parametrize("index", range(DELETE_ACTIONS))
def test_delete_crashed_at_any_step_boundary_resumes_to_the_same_end_state(
    clean, retire_kit, tmp_path: Path, index: int, point: str
):
    _crash_and_resume(clean, retire_kit, tmp_path, Stage.DELETE, index, point)
