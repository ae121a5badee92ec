"""What the provision stage asks sso-admin, whose 20 requests/s it shares: no call it can spare."""

from __future__ import annotations

from flows.apply import apply_plan
from tasks.executor import PollPolicy

# The sandbox completes each async request 100 ms after it is made; the client's first poll
# is timed from that (as TYPICAL_COMPLETION_S is from AWS's), then backs off.
TIMED = PollPolicy(initial=0.05, maximum=0.5, timeout=30, first=0.15)


def test_a_fresh_apply_polls_each_request_once_and_lists_only_to_verify(clean, kit, tmp_path):
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
    # Neither account had a set: one ListPermissionSetsProvisionedToAccount each says so, and
    # the verification after the stage lists assignments once per (account, set): 3. Listing
    # before each creation too would make it 6. (moto answers that list for the whole
    # instance, ignoring AccountId: a set provisioned to the other account first is listed
    # once more, which is merely cautious.)
    assert count("ListPermissionSetsProvisionedToAccount") == 2
    assert 3 <= count("ListAccountAssignments") <= 4
    assert len(kit.live_state(clean)["assignments"]) == 4


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
    assert calls.get("sso-admin:ListAccountAssignments", 0) >= 3
    assert len(kit.live_state(clean)["assignments"]) == 4


def test_a_policys_first_poll_is_its_own_when_given():
    assert TIMED.first_poll("CreateAccountAssignment") == 0.15
