"""Runs an operator can trust: only the latest run of a stage acts; each run's status is its own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from domain.errors import ApplyRefused, AwsAccessError
from domain.plan import Stage
from domain.runs import this_process
from engine import rollback as rollback_module
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.migration import Migration
from engine.reports import load_plan
from engine.rollback import rollback_plan
from engine.runs import LOCK_STALE_AFTER, list_runs, run_status
from flows.apply import resume
from state import Store
from state.journal import ROLLBACK_PREFIX


def _runs(tmp_path: Path) -> list:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return store.runs.list_runs()


def _last(tmp_path: Path, kind: str) -> int:
    return max(r.id for r in _runs(tmp_path) if r.kind == kind)


def test_a_superseded_or_finished_run_never_resumes(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_a = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    applied = kit.live_state(clean)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    first_assignment = next(a for a in plan.actions if a.kind == "create-assignment")
    # Rollback R dies right after its first DeleteAccountAssignment.
    with pytest.raises(InjectedCrash):
        rollback_plan(
            spec, run_a, fault=(ROLLBACK_PREFIX + first_assignment.id, AFTER_CALL), poll=kit.QUICK
        )
    run_r = _last(tmp_path, "rollback")
    rollback_plan(spec, run_a, poll=kit.QUICK)  # a new rollback run completes the job
    run_b = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]  # and the plan is applied again
    assert kit.live_state(clean) == applied
    clean.control.reset_calls()

    with pytest.raises(ApplyRefused, match=rf"run {run_r} was superseded by run {run_b}"):
        resume(spec, run_r)
    with pytest.raises(ApplyRefused, match=rf"run {run_a} was superseded by run {run_b}"):
        resume(spec, run_a)
    with pytest.raises(ApplyRefused, match=rf"run {run_b} succeeded: there is nothing to resume"):
        resume(spec, run_b)
    # Also when called the way a Prefect Retry or `iamc resume` reaches the stage.
    with pytest.raises(ApplyRefused, match="superseded"):
        rollback_plan(spec, run_a, resume_run_id=run_r, poll=kit.QUICK)
    assert kit.live_state(clean) == applied
    assert clean.control.calls()["calls"].get("sso-admin:DeleteAccountAssignment", 0) == 0

    listed = {r["id"]: r for r in Migration.call(list_runs, spec)}
    assert listed[run_r]["status"] == "superseded" and listed[run_r]["superseded_by"] == run_b
    assert listed[run_b]["status"] == "succeeded" and listed[run_b]["next"] is None


def test_each_run_reports_what_it_did_and_the_stage_separately(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    actions = [a for a in plan.actions if a.stage == Stage.PROVISION]
    last = actions[-1]
    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, fault=(last.id, AFTER_INTENT), poll=kit.QUICK)
    run_a = _last(tmp_path, "apply")
    # Not resumed: a second `iamc apply` starts run B, which finishes the stage.
    run_b = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    assert run_b != run_a

    def done(status: dict) -> int:
        return sum(row["done"] for row in status["accounts"].values())

    status_a, status_b = (
        Migration.call(run_status, spec, run_a),
        Migration.call(run_status, spec, run_b),
    )
    # Run A died in its last action (other accounts' threads stop with it); run B did the
    # rest. Neither counts the other's work.
    assert 0 < done(status_a) < len(actions) and done(status_b) >= 1
    assert done(status_a) + done(status_b) == len(actions)
    assert status_a["run"]["status"] == "superseded"
    assert status_a["run"]["superseded_by"] == run_b
    for status in (status_a, status_b):
        assert sum(row["done"] for row in status["stage"].values()) == len(actions)
        assert sum(row["pending"] for row in status["stage"].values()) == 0

    rollback = rollback_plan(spec, run_a, poll=kit.QUICK)
    undone = Migration.call(run_status, spec, rollback["run_id"])
    assert sum(row["rolled_back"] for row in undone["accounts"].values()) == len(actions)
    assert sum(row["done"] for row in undone["accounts"].values()) == 0
    assert sum(row["rolled_back"] for row in undone["stage"].values()) == len(actions)


def test_rollback_names_its_unit_the_plan_stage(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_a = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    dry = rollback_plan(spec, run_a, dry_run=True)
    assert dry["unit"] == (
        f"plan {plan_id} stage provision: everything its apply runs ({run_a}) created, "
        f"not only run {run_a}'s"
    )


def test_a_rollback_refused_for_credentials_leaves_no_running_run(
    clean, kit, tmp_path: Path, monkeypatch
):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_a = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    before = _runs(tmp_path)

    def expired(*_args, **_kwargs):
        raise AwsAccessError("ExpiredToken: The security token included in the request is expired")

    monkeypatch.setattr(rollback_module, "stage_context", expired)
    with pytest.raises(AwsAccessError):
        rollback_plan(spec, run_a, poll=kit.QUICK)
    after = _runs(tmp_path)
    assert [r.id for r in after] == [r.id for r in before]
    assert all(r.status != "running" for r in after)


def test_an_apply_after_an_interrupted_rollback_checks_aws_not_the_journal(
    clean, kit, tmp_path: Path
):
    # Found by the soak (seed 538978): the rollback died right after deleting an assignment,
    # so the journal still said "done"; the next apply skipped it and AWS lacked it.
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_a = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    applied = kit.live_state(clean)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    victim = next(a for a in plan.actions if a.kind == "create-assignment")
    with pytest.raises(InjectedCrash):
        rollback_plan(spec, run_a, fault=(ROLLBACK_PREFIX + victim.id, AFTER_CALL), poll=kit.QUICK)
    assert kit.live_state(clean) != applied
    summary = apply_plan(spec, plan_id, poll=kit.QUICK)
    assert summary["failed"] == summary["pending"] == 0 and summary["errors"] == []
    assert kit.live_state(clean) == applied


def test_a_held_stage_is_refused_at_once_saying_when_the_lease_frees(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        holder = f"{this_process()}:other-op"  # a live process: this one
        assert (
            store.leases.acquire_stage_lock(
                plan_id, "provision", holder, stale_after=LOCK_STALE_AFTER
            )
            is None
        )
    clean.control.reset_calls()
    began = time.monotonic()
    with pytest.raises(ApplyRefused, match=r"lease frees at \d\d:\d\d:\d\d UTC, in \d+ s"):
        apply_plan(spec, plan_id, poll=kit.QUICK)
    assert time.monotonic() - began < 5
    assert clean.control.calls()["total"] == 0  # refused before any AWS read
    assert [r for r in Migration.call(list_runs, spec) if r["kind"] == "apply"] == []
