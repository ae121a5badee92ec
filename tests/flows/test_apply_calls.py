"""What the provision stage asks sso-admin, whose 20 requests/s it shares: no call it can spare."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import ApplyFailed
from engine.apply import apply_plan
from tasks.handler import PollPolicy
from tasks.permission_sets import permission_set_names

# The sandbox completes each async request 100 ms after it is made; the client's first poll
# is timed from that (as TYPICAL_COMPLETION_S is from AWS's), then backs off.
TIMED = PollPolicy(initial=0.05, maximum=0.5, timeout=30, first=0.15)


def test_a_fresh_apply_polls_each_request_once_and_lists_no_assignments(clean, kit, tmp_path):
    clean.control.configure(async_completion_ms=100, async_in_progress_polls=0)
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    clean.control.reset_calls()
    summary = apply_plan(spec, plan_id, poll=TIMED)
    assert summary["succeeded"] == 9 and summary["failed"] == summary["pending"] == 0
    calls = clean.control.calls()["calls"]
    count = lambda operation: calls.get(f"sso-admin:{operation}", 0)  # noqa: E731
    assert count("CreateAccountAssignment") == 4
    assert count("DescribeAccountAssignmentCreationStatus") == 4
    assert count("DescribePermissionSetProvisioningStatus") == count("ProvisionPermissionSet") == 3
    # Neither account had a set: one ListPermissionSetsProvisionedToAccount each says so. Each
    # assignment is then confirmed by its creation's SUCCEEDED status, which the verification
    # takes as read: listing each (account, set) again would add 3 calls.
    assert count("ListPermissionSetsProvisionedToAccount") == 2
    assert count("ListAccountAssignments") == 0
    assert len(kit.live_state(clean)["assignments"]) == 4


def test_assignments_an_earlier_run_made_are_listed_and_a_missing_one_fails(clean, kit, tmp_path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    apply_plan(spec, plan_id, poll=kit.QUICK)
    a2 = clean.accounts[1]
    sso = clean.client("sso-admin")
    gone = next(a for a in kit.live_state(clean)["assignments"] if a[0] == a2)
    readers = permission_set_names(sso, clean.instance_arn)[gone[1]]
    # Removed outside iamc after the run: the journal still has it as done.
    sso.delete_account_assignment(
        InstanceArn=clean.instance_arn,
        TargetId=a2,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=readers,
        PrincipalType=gone[2],
        PrincipalId=gone[3],
    )
    clean.control.reset_calls()
    with pytest.raises(ApplyFailed, match=rf"verify: .* in {a2}: not assigned"):
        apply_plan(spec, plan_id, poll=kit.QUICK)
    # This run made none of them: each (account, set) is listed once, nothing is created.
    assert kit.calls(clean)("ListAccountAssignments") == 3
    assert kit.calls(clean)("CreateAccountAssignment") == 0


def test_an_account_that_has_the_set_already_is_listed_before_creating(clean, kit, tmp_path):
    spec, plan_id = kit.write_approved_plan(clean, tmp_path)
    apply_plan(spec, plan_id, poll=kit.QUICK)
    # Another state (no journal of the first) applies the same plan: the sets are provisioned
    # to both accounts now, so their assignments are listed and adopted, not created twice
    # (the sandbox refuses duplicates).
    again = tmp_path / "again"
    again.mkdir()
    spec2, plan2 = kit.write_approved_plan(clean, again)
    clean.control.reset_calls()
    summary = apply_plan(spec2, plan2, poll=kit.QUICK)
    assert summary["failed"] == 0 and summary["adopted"] >= 4
    calls = clean.control.calls()["calls"]
    assert calls.get("sso-admin:CreateAccountAssignment", 0) == 0
    # Each (account, set) is listed once, before its first assignment; the verification
    # after reads those listings.
    assert calls.get("sso-admin:ListAccountAssignments", 0) == 3
    assert len(kit.live_state(clean)["assignments"]) == 4


def test_a_policys_first_poll_is_its_own_when_given():
    assert TIMED.first_poll("CreateAccountAssignment") == 0.15


def test_the_specs_first_status_poll_reaches_the_apply(aws, tmp_path: Path):
    """`[aws] first_status_poll_s` replaces the typical-completion wait; unset, it stays."""
    import boto3

    from domain.spec import load_spec
    from engine.apply import stage_context as _context
    from tasks.handler import TYPICAL_COMPLETION_S

    boto3.client("sso-admin", region_name="us-east-1").list_instances()  # moto makes one
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "x"\nstate = "sqlite:///s.db"\n[aws]\nfirst_status_poll_s = 0.25\n')
    quick = _context(load_spec(spec), str(spec), None)
    spec.write_text('name = "x"\nstate = "sqlite:///s.db"\n')
    default = _context(load_spec(spec), str(spec), None)

    assert quick.poll.first_poll("CreateAccountAssignment") == 0.25
    assert (
        default.poll.first_poll("CreateAccountAssignment")
        == TYPICAL_COMPLETION_S["CreateAccountAssignment"]
    )
