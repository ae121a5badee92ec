"""`iamc drift` in the in-process sandbox: after a real apply, an inline policy edited by hand
and an assignment deleted by hand are found, the drift plan restores both through the
provision stage, and a read again finds nothing; an unreachable account makes a partial read
that says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domain.plan import Plan
from engine.apply import apply_plan
from engine.approvals import record_decision
from engine.migration import Migration
from engine.progress import latest_plan_id
from flows.drift import run_drift

EDITED = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def _applied(world: Any, kit: Any, tmp_path: Path) -> tuple[Path, int]:
    spec, plan_id = kit.write_approved_plan(world, tmp_path, approve="provision")
    assert apply_plan(spec, plan_id, "provision", poll=kit.QUICK)["failed"] == 0
    return spec, plan_id


def _set_arn(world: Any, name: str) -> str:
    from tasks.permission_sets import permission_set_names

    return permission_set_names(world.client("sso-admin"), world.instance_arn)[name]


def _approve_and_apply(spec: Path, plan_id: int, kit: Any) -> dict[str, Any]:
    with Migration.open(spec) as mig:
        info = mig.store.plans.get_plan(plan_id)
        assert info is not None
        record_decision(
            mig, plan_id, approver="cab", ticket="CHG-1", stage="provision", expected_hash=info.hash
        )
    return apply_plan(spec, plan_id, "provision", poll=kit.QUICK)


def test_drift_is_found_and_its_plan_puts_it_back(clean, kit, tmp_path: Path) -> None:
    world = clean
    spec, wave_plan = _applied(world, kit, tmp_path)
    before = kit.live_state(world)
    nothing = run_drift(spec, tmp_path / "none")
    assert nothing["drift"] == 0 and nothing["plan_id"] is None and nothing["complete"]
    assert not (tmp_path / "none").exists()

    sso, instance = world.client("sso-admin"), world.instance_arn
    a2 = world.accounts[1]
    readers = _set_arn(world, "Readers")
    sso.put_inline_policy_to_permission_set(
        InstanceArn=instance, PermissionSetArn=readers, InlinePolicy=json.dumps(EDITED)
    )
    bob = world.users["bob@example.com"]
    sso.delete_account_assignment(
        InstanceArn=instance,
        TargetId=a2,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=readers,
        PrincipalType="USER",
        PrincipalId=bob,
    )
    assert kit.live_state(world) != before

    found = run_drift(spec, tmp_path / "drift")
    assert found["complete"] and found["plan_id"] is not None
    kinds = found["kinds"]
    assert kinds["set-changed"] == 1 and kinds["assignment-removed"] == 1
    # The edit left the set's latest definition unprovisioned in both accounts that have it.
    assert kinds["set-not-provisioned"] == 2
    assert any("set-changed Readers" in f and "inline_policy" in f for f in found["findings"])
    assert any("bob@example.com" in f and a2 in f for f in found["findings"])
    written = json.loads((tmp_path / "drift" / "plan.json").read_text())
    assert written["plan_id"] == found["plan_id"] and written["hash"] == found["hash"]
    assert "Readers" in (tmp_path / "drift" / "plan.md").read_text()

    plan_id = found["plan_id"]
    with Migration.open(spec) as mig:
        plan = Plan.from_content(mig.store.plans.get_plan(plan_id).content)
        # The wave's own plan stays the latest plan: a drift plan supersedes nothing.
        assert latest_plan_id(mig) == wave_plan
    assert plan.is_drift and plan.wave is None
    assert sorted(a.kind for a in plan.actions) == [
        "create-assignment",
        "provision-permission-set",
        "provision-permission-set",
        "update-permission-set",
    ]

    summary = _approve_and_apply(spec, plan_id, kit)
    assert summary["failed"] == 0 and summary["pending"] == 0
    assert kit.live_state(world) == before
    again = run_drift(spec)
    assert again["drift"] == 0 and again["plan_id"] is None, again["findings"]


def test_an_unreachable_account_makes_a_partial_read_that_says_so(
    clean, kit, tmp_path: Path
) -> None:
    world = clean
    spec, _ = _applied(world, kit, tmp_path)
    a1, a2 = world.accounts
    sso, instance = world.client("sso-admin"), world.instance_arn
    # Not the set's last assignment in a2: that would deprovision it there too.
    sso.delete_account_assignment(
        InstanceArn=instance,
        TargetId=a2,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=_set_arn(world, "Readers"),
        PrincipalType="USER",
        PrincipalId=world.users["bob@example.com"],
    )
    with kit.role_removed(world, a1):
        found = run_drift(spec, tmp_path / "drift")
    assert not found["complete"]
    assert list(found["accounts_not_read"]) == [a1]
    assert "AssumeRole" in found["accounts_not_read"][a1]
    assert found["kinds"] == {"assignment-removed": 1}
    with Migration.open(spec) as mig:
        plan = Plan.from_content(mig.store.plans.get_plan(found["plan_id"]).content)
    assert plan.drift["accounts_not_read"] == found["accounts_not_read"]
    assert any(f.kind == "drift-account-not-read" and f.account_id == a1 for f in plan.findings)
    assert {a.account_id for a in plan.actions} == {a2}
    assert "PARTIAL READ" in (tmp_path / "drift" / "plan.md").read_text()


def test_nothing_applied_is_refused(clean, kit, tmp_path: Path) -> None:
    import pytest

    from domain.errors import NothingToCompare

    spec, _ = kit.write_approved_plan(clean, tmp_path)
    with pytest.raises(NothingToCompare) as refused:
        run_drift(spec)
    assert refused.value.exit_code == 2


def _remove_bobs_readers(world: Any) -> None:
    world.client("sso-admin").delete_account_assignment(
        InstanceArn=world.instance_arn,
        TargetId=world.accounts[1],
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=_set_arn(world, "Readers"),
        PrincipalType="USER",
        PrincipalId=world.users["bob@example.com"],
    )


def test_an_older_drift_plan_is_refused_once_a_newer_read_exists(
    clean, kit, tmp_path: Path
) -> None:
    import pytest

    from domain.errors import ApplyRefused

    world = clean
    spec, _ = _applied(world, kit, tmp_path)
    _remove_bobs_readers(world)
    older = run_drift(spec, tmp_path / "d1")["plan_id"]
    newer = run_drift(spec, tmp_path / "d2")["plan_id"]
    assert older is not None and newer is not None and older != newer
    removed = kit.live_state(world)
    with pytest.raises(ApplyRefused, match="older drift plan") as refused:
        _approve_and_apply(spec, older, kit)
    assert f"drift plan {newer}" in str(refused.value) and "iamc drift" in str(refused.value)
    assert kit.live_state(world) == removed
    assert _approve_and_apply(spec, newer, kit)["failed"] == 0


def test_a_drift_plan_read_before_a_rollback_is_refused(clean, kit, tmp_path: Path) -> None:
    import pytest

    from domain.errors import ApplyRefused
    from engine.rollback import rollback_plan

    world = clean
    spec, plan_id = kit.write_approved_plan(world, tmp_path, approve="provision")
    applied = apply_plan(spec, plan_id, "provision", poll=kit.QUICK)
    _remove_bobs_readers(world)
    found = run_drift(spec, tmp_path / "drift")
    assert found["plan_id"] is not None
    rollback_plan(spec, applied["run_id"], poll=kit.QUICK)
    rolled_back = kit.live_state(world)
    # Applying it would create again the assignment (and its set) the rollback removed.
    with pytest.raises(ApplyRefused, match=f"plan {plan_id}'s provision stage changed") as refused:
        _approve_and_apply(spec, found["plan_id"], kit)
    assert "re-run 'iamc drift" in str(refused.value)
    assert kit.live_state(world) == rolled_back


def test_a_drift_plan_is_not_the_plan_of_a_migration_without_waves(
    clean, kit, tmp_path: Path
) -> None:
    from engine.reports import waves_report

    world = clean
    spec, wave_plan = _applied(world, kit, tmp_path)
    _remove_bobs_readers(world)
    found = run_drift(spec, tmp_path / "drift")
    assert found["plan_id"] is not None and found["plan_id"] != wave_plan
    rows, _ = Migration.call(waves_report, spec)
    assert [row["plan"] for row in rows] == [wave_plan]
