"""Rolling back a provision stage at the speed of its apply: every account at once, a failed
account stopping alone, the permission sets it still uses kept, and a resume that finishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from domain.errors import ApplyFailed
from engine.apply import apply_plan
from engine.migration import Migration
from engine.rollback import rollback_plan
from engine.runs import list_runs, run_status
from flows.apply import resume, rollback_flow
from state import Store
from tasks.permission_sets import permission_set_names

# Deletions complete this long after they are made: one at a time, 4 of them take 12 s, two at
# a time 6 s; all at once ~3 s, and the rest of a rollback (~1.5 s on a loaded machine) fits
# under two completion times.
COMPLETION_MS = 3000


def _rollback_runs(spec: Path) -> list[dict]:
    return [r for r in Migration.call(list_runs, spec) if r["kind"] == "rollback"]


def test_the_accounts_are_undone_at_once_and_the_sets_after_their_assignments(
    clean, kit, tmp_path: Path
):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_id = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    assert len(kit.live_state(clean)["assignments"]) == 4
    clean.control.configure(async_completion_ms=COMPLETION_MS)
    clean.control.reset_calls()

    began = time.monotonic()
    summary = rollback_plan(spec, run_id, poll=kit.QUICK)
    took = time.monotonic() - began
    print(f"rollback of 4 assignments and 2 sets: {took:.1f} s")

    assert kit.live_state(clean) == {"permission_sets": {}, "assignments": []}
    # Four deletions at once take about one completion time; two at a time take two.
    assert took < 2 * COMPLETION_MS / 1000, f"rollback took {took:.1f} s"
    assert summary["undone"] == 2 + 3 + 4 and summary["errors"] == []
    assert kit.calls(clean)("DeleteAccountAssignment") == 4
    assert kit.calls(clean)("DeletePermissionSet") == 2


def test_a_failed_undo_stops_only_its_account_and_keeps_the_sets_it_uses(
    clean, kit, tmp_path: Path
):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_id = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    a1, a2 = clean.accounts
    admins = permission_set_names(clean.client("sso-admin"), clean.instance_arn)["Admins"]
    clean.control.fail_next_assignment(a1, admins, "Injected: InternalFailure", "delete")
    clean.control.reset_calls()

    with pytest.raises(ApplyFailed) as err:
        rollback_plan(spec, run_id, poll=kit.QUICK)
    message = str(err.value)
    assert f"the undo failed in {a1} " in message and "FAILED: Injected: InternalFailure" in message
    live = kit.live_state(clean)
    # The other account's undo went on; a1 keeps its Admins assignment, and both sets stay
    # while a1's rows that use them are not undone.
    assert [a for a in live["assignments"] if a2 in a] == []
    assert any(a1 in a and "Admins" in a for a in live["assignments"])
    assert set(live["permission_sets"]) == {"Admins", "Readers"}
    assert kit.calls(clean)("DeletePermissionSet") == 0
    rollback_run = _rollback_runs(spec)[-1]
    status = Migration.call(run_status, spec, rollback_run["id"])
    assert status["run"]["status"] == "failed"
    assert "Injected: InternalFailure" in status["run"]["error"]

    # Resumed once the cause is gone: what is left is undone, nothing twice.
    resume(spec, rollback_run["id"])
    assert kit.live_state(clean) == {"permission_sets": {}, "assignments": []}
    assert kit.calls(clean)("DeleteAccountAssignment") == 4 + 1  # the FAILED one, sent again
    assert kit.calls(clean)("DeletePermissionSet") == 2
    assert Migration.call(run_status, spec, rollback_run["id"])["run"]["status"] == "succeeded"


def test_the_rollback_flow_runs_one_task_per_account_named_like_the_apply(
    clean, kit, tmp_path: Path
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_id = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    a1, a2 = clean.accounts
    readers = permission_set_names(clean.client("sso-admin"), clean.instance_arn)["Readers"]
    clean.control.fail_next_assignment(a2, readers, "Injected: InternalFailure", "delete")

    with pytest.raises(ApplyFailed, match=f"the undo failed in {a2} "):
        rollback_flow(str(spec), run_id)
    rollback_run = _rollback_runs(spec)[-1]["id"]
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        flow_run_id = store.runs.get_run(rollback_run).params["prefect_flow_run_id"]
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    states = {t.name: t.state.type.value for t in tasks}
    assert states[f"rollback {a1}"] == "COMPLETED"
    assert states[f"rollback {a2}"] == "FAILED"
    failed = next(t for t in tasks if t.name == f"rollback {a2}")
    assert "Injected: InternalFailure" in (failed.state.message or "")
    # Readers waits for a2 (its task ends Failed, saying so); Admins, only a1's, is gone.
    assert states["rollback management"] == "FAILED"
    assert set(kit.live_state(clean)["permission_sets"]) == {"Readers"}

    resume(spec, rollback_run)
    assert kit.live_state(clean) == {"permission_sets": {}, "assignments": []}
