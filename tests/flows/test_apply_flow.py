"""Applying a provision stage: refusals, adoption, conflicts, rollback, throttling, FAILED."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from domain.errors import ApplyFailed, ApplyRefused
from domain.policy_documents import canonical_json
from domain.progress import listening
from engine.apply import apply_plan
from engine.approvals import record_decision
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.migration import Migration
from engine.reports import load_plan
from engine.rollback import rollback_plan
from engine.runs import list_runs, run_status
from flows.apply import apply_flow, resume
from state import Store
from tasks.handler import PollPolicy
from tasks.permission_sets import permission_set_names

MUTATIONS = (
    "CreatePermissionSet",
    "PutInlinePolicyToPermissionSet",
    "AttachManagedPolicyToPermissionSet",
    "ProvisionPermissionSet",
    "CreateAccountAssignment",
)


def _mutations(world, kit) -> int:
    count = kit.calls(world)
    return sum(count(op) for op in MUTATIONS)


def _create_readers(world, kit, description: str = "read access") -> None:
    """Create "Readers" by hand, as someone before the migration would have."""
    definition = next(ps for ps in kit.permission_sets() if ps.name == "Readers")
    sso = world.client("sso-admin")
    arn = sso.create_permission_set(
        InstanceArn=world.instance_arn,
        Name="Readers",
        Description=description,
        SessionDuration=definition.session_duration,
    )["PermissionSet"]["PermissionSetArn"]
    ids = {"InstanceArn": world.instance_arn, "PermissionSetArn": arn}
    sso.put_inline_policy_to_permission_set(
        **ids, InlinePolicy=json.dumps(definition.inline_policy)
    )
    sso.attach_managed_policy_to_permission_set(**ids, ManagedPolicyArn=kit.READ_ONLY)
    sso.attach_customer_managed_policy_reference_to_permission_set(
        **ids, CustomerManagedPolicyReference={"Name": "team-read", "Path": "/iamc/"}
    )


def _apply_run_id(tmp_path: Path) -> int:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return next(r.id for r in store.runs.list_runs() if r.kind == "apply")


# -- refusals: exit code 2, nothing mutated ------------------------------------------------


def test_an_unapproved_plan_is_refused(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path, approve="disable")
    with pytest.raises(ApplyRefused, match="not approved for stage provision") as err:
        apply_plan(spec, plan_id, poll=kit.QUICK)
    assert err.value.exit_code == 2
    assert _mutations(clean, kit) == 0
    assert Migration.call(list_runs, spec)[-1]["kind"] == "plan"  # no apply run was even started


@pytest.mark.parametrize("stage", ["disable", "delete"])
def test_retire_stages_of_a_plan_without_users_change_nothing(
    clean, kit, tmp_path: Path, stage: str
):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path, approve="all")
    if stage == "delete":
        # "all" never covers delete: it is approved on its own, quoting its users (none here).
        with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
            digest = store.plans.get_plan(plan_id).hash
        Migration.call(record_decision,
            spec, plan_id, approver="cab", ticket="CHG-2", stage="delete", expected_hash=digest,
            deletes=0,
        )  # fmt: skip
    summary = apply_plan(spec, plan_id, stage, poll=kit.QUICK)
    assert summary["actions"] == 0 and summary["refused_by_plan"] == []
    assert _mutations(clean, kit) == 0


def test_an_unknown_stage_is_refused(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path, approve="all")
    with pytest.raises(ApplyRefused, match="expected one of provision, replace, disable, delete"):
        apply_plan(spec, plan_id, "destroy", poll=kit.QUICK)


def test_stale_principals_are_named_and_nothing_is_changed(clean, kit, tmp_path: Path):
    a1, _ = clean.accounts
    gone = kit.AssignmentDefinition(a1, "Admins", "USER", "u-gone", "carol@example.com", "x")
    renamed = kit.AssignmentDefinition(
        a1, "Readers", "GROUP", clean.groups["devs"], "developers", "y"
    )
    spec, plan_id = kit.write_approved_plan(clean, tmp_path, extra_assignments=[gone, renamed])
    with pytest.raises(ApplyRefused) as err:
        apply_plan(spec, plan_id, poll=kit.QUICK)
    message = str(err.value)
    assert "is stale: 2 target(s) changed" in message
    assert "user carol@example.com (u-gone) no longer exists" in message
    assert "is now named 'devs', planned as 'developers'" in message
    assert _mutations(clean, kit) == 0


def test_a_permission_set_that_differs_is_a_conflict_that_changes_nothing(
    clean, kit, tmp_path: Path
):
    _create_readers(clean, kit, description="other team readers")
    before = kit.live_state(clean)
    clean.control.reset_calls()
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    with pytest.raises(ApplyRefused) as err:
        apply_plan(spec, plan_id, poll=kit.QUICK)
    assert "permission set Readers already exists and differs from the plan" in str(err.value)
    assert "description 'other team readers' (plan: 'read access')" in str(err.value)
    assert kit.live_state(clean) == before
    assert _mutations(clean, kit) == 0
    # A refusal before any change records no run (issue 9): only the plan's own runs exist.
    assert [r for r in Migration.call(list_runs, spec) if r["kind"] == "apply"] == []


def test_a_boundary_the_endpoint_cannot_set_fails_its_action_clearly(
    clean, kit, tmp_path, monkeypatch
):
    # An endpoint without the call (moto in process answers NotImplemented; the sandbox
    # implements it, so it is made to answer as moto does for this test).
    from sandbox.wire import json_error

    monkeypatch.setitem(
        clean.sandbox.middleware._handlers,
        "sso-admin:PutPermissionsBoundaryToPermissionSet",
        lambda call: json_error("NotImplemented", "not implemented", 501),
    )
    sets = kit.permission_sets()
    sets[0] = replace(sets[0], permissions_boundary={"managed_policy_arn": kit.READ_ONLY})
    spec, plan_id = kit.write_approved_plan(clean, tmp_path, sets=sets)
    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, poll=kit.QUICK)
    assert "Admins needs a permissions boundary" in str(err.value)
    assert "PutPermissionsBoundaryToPermissionSet (NotImplemented)" in str(err.value)
    status = Migration.call(run_status, spec, _apply_run_id(tmp_path))
    assert status["accounts"]["management"]["failed"] == 1
    # Readers and its work went on; Admins' provisioning and assignment wait, blocked.
    assert kit.live_state(clean)["assignments"] == [
        a for a in kit.live_state(clean)["assignments"] if a[1] == "Readers"
    ]
    # Rollback removes the half-made Admins too: it is ours.
    rollback_plan(spec, _apply_run_id(tmp_path), poll=kit.QUICK)
    assert kit.live_state(clean) == {"permission_sets": {}, "assignments": []}


# -- adoption and rollback -----------------------------------------------------------------


def test_rollback_restores_the_state_before_and_leaves_adopted_sets_alone(
    clean, kit, tmp_path: Path
):
    _create_readers(clean, kit)
    before = kit.live_state(clean)
    clean.control.reset_calls()
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)

    summary = apply_plan(spec, plan_id, poll=kit.QUICK)
    assert (summary["succeeded"], summary["adopted"]) == (8, 1)
    assert kit.calls(clean)("CreatePermissionSet") == 1  # Admins only: Readers was adopted
    run_id = summary["run_id"]
    applied = kit.live_state(clean)
    assert len(applied["assignments"]) == 4

    listing = rollback_plan(spec, run_id, dry_run=True)
    assert listing["left_alone"] == ["create-permission-set Readers (existed before: adopted)"]
    assert len(listing["undo"]) == 2 + 3 + 4 - 1 - 0  # everything but the adopted set
    assert listing["undo"][0].startswith("create-assignment")
    assert listing["undo"][-1] == "create-permission-set Admins"
    assert kit.live_state(clean) == applied  # a dry run changes nothing

    result = rollback_plan(spec, run_id, poll=kit.QUICK)
    assert kit.live_state(clean) == before
    assert "Readers" in kit.live_state(clean)["permission_sets"]
    status = Migration.call(run_status, spec, result["run_id"])
    assert status["run"]["kind"] == "rollback" and status["run"]["status"] == "succeeded"
    # A second rollback finds nothing left to undo.
    assert rollback_plan(spec, run_id, dry_run=True)["undo"] == []


@pytest.mark.parametrize("point", [AFTER_INTENT, AFTER_CALL])
def test_rollback_is_journaled_and_resumable(clean, kit, tmp_path: Path, point: str):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    run_id = apply_plan(spec, plan_id, poll=kit.QUICK)["run_id"]
    plan, _ = Migration.call(load_plan, spec, plan_id)
    victim = next(a for a in plan.actions if a.kind == "create-assignment")
    with pytest.raises(InjectedCrash):
        rollback_plan(spec, run_id, fault=(f"rollback:{victim.id}", point), poll=kit.QUICK)
    rollback_run = max(r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "rollback")
    rollback_plan(spec, run_id, resume_run_id=rollback_run, poll=kit.QUICK)
    assert kit.live_state(clean) == {"permission_sets": {}, "assignments": []}
    assert kit.calls(clean)("DeleteAccountAssignment") == 4

    # The plan can be applied again after its rollback.
    again = apply_plan(spec, plan_id, poll=kit.QUICK)
    assert again["succeeded"] == 9
    assert len(kit.live_state(clean)["assignments"]) == 4


# -- through Prefect: throttling, IN_PROGRESS, FAILED ------------------------------------


def test_the_flow_completes_under_throttling_with_in_progress_statuses(clean, kit, tmp_path):
    clean.control.configure(throttle={"sso-admin": 20}, async_in_progress_polls=2)
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    summary = apply_flow(str(spec), plan_id, "provision")
    assert summary["succeeded"] == 9 and summary["failed"] == summary["pending"] == 0
    status = Migration.call(run_status, spec, summary["run_id"])
    assert status["run"]["status"] == "succeeded"
    assert {a: (r["done"], r["pending"], r["failed"]) for a, r in status["accounts"].items()} == {
        "management": (2, 0, 0),
        clean.accounts[0]: (4, 0, 0),
        clean.accounts[1]: (3, 0, 0),
    }
    calls = clean.control.calls()
    assert calls["calls"]["sso-admin:CreateAccountAssignment"] == 4


def test_a_failed_assignment_fails_the_run_with_its_reason_and_a_resume_completes_it(
    clean, kit, tmp_path: Path
):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    a1, a2 = clean.accounts
    provision = next(
        a for a in plan.actions if a.kind == "provision-permission-set" and a.account_id == a1
    )
    # Stop once the permission sets exist, to aim the sandbox's fault at one of them.
    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, fault=(provision.id, AFTER_INTENT), poll=kit.QUICK)
    run_id = _apply_run_id(tmp_path)
    sso = clean.client("sso-admin")
    readers = permission_set_names(sso, clean.instance_arn)["Readers"]
    clean.control.fail_next_assignment(a1, readers, "Quota exceeded for account assignments")

    with pytest.raises(ApplyFailed, match="FAILED: Quota exceeded for account assignments"):
        resume(spec, run_id)
    status = Migration.call(run_status, spec, run_id)
    assert status["run"]["status"] == "failed"
    assert status["accounts"][a1]["failed"] == 1
    assert "Quota exceeded for account assignments" in status["accounts"][a1]["errors"][0]
    assert status["accounts"][a2] == {
        "done": 3, "pending": 0, "failed": 0, "adopted": 0, "rolled_back": 0,
        "refusals": [], "errors": [],
    }  # fmt: skip

    summary = resume(spec, run_id)
    assert summary["run_id"] == run_id and summary["succeeded"] == 9
    assert Migration.call(run_status, spec, run_id)["run"]["status"] == "succeeded"
    assert kit.calls(clean)("CreatePermissionSet") == 2
    # One create FAILED and was sent again; every other one once.
    assert kit.calls(clean)("CreateAccountAssignment") == 5
    assert canonical_json(kit.live_state(clean)["assignments"])


def test_an_account_provisions_its_sets_together_and_is_verified_before_the_next_starts(
    clean, kit, tmp_path: Path
):
    # Each async request completes 300 ms after it is made, and is first polled then.
    clean.control.configure(async_completion_ms=300, async_in_progress_polls=0)
    poll = PollPolicy(initial=0.05, maximum=0.5, timeout=30, first=0.3)
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    plan, _ = Migration.call(load_plan, spec, plan_id)
    account_of = {a.id: a.account_id for a in plan.actions}
    a1, a2 = clean.accounts
    events: list[tuple[float, str, dict]] = []
    with listening(lambda event, data: events.append((time.monotonic(), event, data))):
        # Outside a flow the accounts run one after another.
        summary = apply_plan(spec, plan_id, poll=poll)
    assert summary["succeeded"] == 9
    order = [
        ("verified", d["account_id"])
        if e == "account-verified"
        else ("done", account_of[d["action_id"]])
        for _, e, d in events
        if e in ("account-verified", "action-done")
    ]
    first, second = sorted((a1, a2))  # accounts go in account-id order
    assert order.index(("verified", first)) < order.index(("done", second))
    assert [d for _, e, d in events if e == "account-verified"] == [
        {"account_id": first, "checked": 2, "missing": 0},
        {"account_id": second, "checked": 2, "missing": 0},
    ]
    # a1's two sets were provisioned at once.
    kind_of = {a.id: a.kind for a in plan.actions}
    provisioned = [
        t
        for t, e, d in events
        if e == "action-done"
        and kind_of[d["action_id"]] == "provision-permission-set"
        and account_of[d["action_id"]] == a1
    ]
    assert len(provisioned) == 2
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        entries = [
            e for e in store.journal.journal_entries(plan_id, "provision") if e.account_id == a1
        ]
    # Together: each set's provisioning started before the other's ended (one after the
    # other, the second would start when the first had ended, 300 ms or more later).
    sets = sorted(
        (e for e in entries if e.kind == "provision-permission-set"), key=lambda e: e.started
    )
    assert sets[1].started < sets[0].finished
    assert sorted(e.kind for e in entries if e.status == "succeeded") == [
        "create-assignment", "create-assignment",
        "provision-permission-set", "provision-permission-set",
    ]  # fmt: skip


# -- one process per stage ------------------------------------------------------------------


def test_a_stage_another_live_process_is_changing_is_refused(clean, kit, tmp_path: Path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    from datetime import timedelta

    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.leases.acquire_stage_lock(
            plan_id, "provision", "ops-host:4242:cafe", stale_after=timedelta(1)
        )
        store.leases.stage_lock_run(plan_id, "provision", "ops-host:4242:cafe", 99)
    with pytest.raises(ApplyRefused, match=r"being changed by run 99 \(ops-host:4242:cafe") as err:
        apply_plan(spec, plan_id, poll=kit.QUICK)
    assert err.value.exit_code == 2
    assert _mutations(clean, kit) == 0

    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.leases.release_stage_lock(plan_id, "provision", "ops-host:4242:cafe")
    summary = apply_plan(spec, plan_id, poll=kit.QUICK)
    assert summary["failed"] == 0 and summary["pending"] == 0
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        # Released at the end: the next process gets it at once.
        assert (
            store.leases.acquire_stage_lock(plan_id, "provision", "next", stale_after=timedelta(1))
            is None
        )


def test_a_lock_left_by_a_killed_process_is_taken_over(clean, kit, tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.leases.acquire_stage_lock(
            plan_id,
            "provision",
            "killed:1:dead",
            stale_after=timedelta(minutes=2),
            now=datetime.now(UTC) - timedelta(minutes=30),
        )
    summary = apply_plan(spec, plan_id, poll=kit.QUICK)
    assert summary["failed"] == 0 and summary["pending"] == 0
