"""One account's failure never sinks a stage's run: it fails alone, with AWS's reason.

The member role of one account is deleted (AssumeRole into it is refused, as AWS refuses it);
each stage's run is still recorded, that account shows FAILED with AWS's words in
``iamc status``'s data, the other account is done, and once the role is back a resume of
the same run finishes it with no mutation repeated.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from domain.errors import ApplyFailed
from engine.apply import apply_plan
from engine.migration import Migration
from engine.runs import list_runs, run_status
from state import Store

ASSUME_REFUSED = "sts:AssumeRole on resource"


def _last_run(tmp_path: Path) -> int:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return [r.id for r in store.runs.list_runs() if r.kind == "apply"][-1]


def _assignments(world, account_id: str) -> int:
    sso = world.client("sso-admin")
    found = 0
    for ps in sso.list_permission_sets(InstanceArn=world.instance_arn)["PermissionSets"]:
        found += len(
            sso.list_account_assignments(
                InstanceArn=world.instance_arn, AccountId=account_id, PermissionSetArn=ps
            )["AccountAssignments"]
        )
    return found


def test_provision_with_one_account_unreachable_does_the_other_and_resumes(
    clean, kit, tmp_path: Path
):
    a1, a2 = clean.accounts
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    with kit.role_removed(clean, a2):
        with pytest.raises(ApplyFailed, match=ASSUME_REFUSED) as err:
            apply_plan(spec, plan_id, poll=kit.QUICK)
        assert "resume" in str(err.value)
    run_id = _last_run(tmp_path)
    status = Migration.call(run_status, spec, run_id)
    assert status["run"]["status"] == "failed"
    down = status["stage"][a2]
    assert ASSUME_REFUSED in down["account_failed"] and a2 in down["account_failed"]
    assert down["pending"] > 0 and down["done"] == 0
    assert status["stage"][a1]["pending"] == 0 and status["stage"][a1]["done"] > 0
    assert [r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "apply"] == [run_id]
    assert _assignments(clean, a2) == 0 and _assignments(clean, a1) > 0
    created = kit.calls(clean)("CreateAccountAssignment")

    summary = apply_plan(spec, plan_id, resume_run_id=run_id, poll=kit.QUICK)

    assert summary["failed"] == summary["pending"] == 0
    assert Migration.call(run_status, spec, run_id)["stage"][a2].get("account_failed") is None
    # Only a2's assignments were created by the resume: a1's were not sent again.
    assert kit.calls(clean)("CreateAccountAssignment") - created == _assignments(clean, a2)


def test_disable_with_one_account_unreachable_disables_the_others(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, f"c{uuid.uuid4().hex[:6]}-"
    a1, a2 = clean.accounts
    kit.seed_user(clean, a1, f"{prefix}jane", keys=1)
    kit.seed_user(clean, a2, f"{prefix}bob", keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    with kit.role_removed(clean, a2), pytest.raises(ApplyFailed, match=ASSUME_REFUSED):
        apply_plan(spec, plan_id, "disable")
    run_id = _last_run(tmp_path)
    status = Migration.call(run_status, spec, run_id)
    assert ASSUME_REFUSED in status["stage"][a2]["account_failed"]
    assert status["stage"][a1]["pending"] == 0 and status["stage"][a1]["failed"] == 0
    keys = clean.member_iam(a1).list_access_keys(UserName=f"{prefix}jane")["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Inactive"}
    keys = clean.member_iam(a2).list_access_keys(UserName=f"{prefix}bob")["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Active"}

    summary = apply_plan(spec, plan_id, "disable", resume_run_id=run_id)

    assert summary["failed"] == summary["pending"] == 0
    keys = clean.member_iam(a2).list_access_keys(UserName=f"{prefix}bob")["AccessKeyMetadata"]
    assert {k["Status"] for k in keys} == {"Inactive"}
