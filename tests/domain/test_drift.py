"""The drift findings and plan, pure: each kind of drift gets the provision stage's own
actions, in an order apply can run, and nothing for an account the read did not reach."""

from __future__ import annotations

from domain.drift import DriftKind, DriftRead, account_findings, drift_plan, set_findings
from domain.waves import OrgPermissionSet, Owned

DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}


def _ours() -> Owned:
    definition = {
        "name": "Readers",
        "description": "read",
        "fingerprint": "f-r",
        "session_duration": "PT4H",
        "inline_policy": DOC,
        "aws_managed_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "customer_managed_policies": [],
        "permissions_boundary": None,
    }
    known = OrgPermissionSet("Readers", "f-r", definition, True, "plan 1", ["111", "222"])
    assignments = {
        (a, "Readers", "USER", "u-1"): {
            "account_id": a,
            "permission_set_name": "Readers",
            "principal_type": "USER",
            "principal_id": "u-1",
            "principal_name": "alice",
        }
        for a in ("111", "222")
    }
    return Owned(sets={"Readers": known}, assignments=assignments)


def test_a_live_set_as_recorded_is_no_drift_and_a_reordered_policy_list_neither() -> None:
    ours = _ours()
    live = {**ours.sets["Readers"].definition, "arn": "arn:ps"}
    live["aws_managed_policy_arns"] = list(reversed(live["aws_managed_policy_arns"]))
    assert set_findings(ours, {"Readers": live}) == ([], {})
    edited = {**live, "inline_policy": None, "session_duration": "PT12H"}
    findings, changed = set_findings(ours, {"Readers": edited})
    assert [(f.kind, f.fields) for f in findings] == [
        (DriftKind.SET_CHANGED, ("session_duration", "inline_policy"))
    ]
    assert changed == {"Readers": edited}


def test_a_deleted_set_is_created_provisioned_and_assigned_again_where_reached() -> None:
    ours = _ours()
    findings, _ = set_findings(ours, {"Readers": None})
    read = DriftRead("2026-12-06T00:00:00+00:00", findings, ["111"], {"222": "AccessDenied"})
    plan = drift_plan("m", 1, ours, read)
    assert plan is not None and plan.is_drift and not plan.drift["complete"]
    by_id = {a.id: a for a in plan.actions}
    create = "provision:create-permission-set:Readers"
    provision = "provision:provision-permission-set:Readers:111"
    assign = "provision:create-assignment:111:Readers:USER:u-1"
    assert sorted(by_id) == sorted([create, provision, assign])
    assert by_id[provision].depends_on == [create] and by_id[assign].depends_on == [provision]
    assert by_id[create].params["definition"] == ours.sets["Readers"].definition
    assert any(f.kind == "drift-account-not-read" and f.account_id == "222" for f in plan.findings)


def test_an_account_with_a_stale_set_and_a_removed_assignment() -> None:
    ours = _ours()
    found = account_findings(ours, "222", {"Readers": "arn:ps"}, {"arn:ps"}, {"arn:ps"}, {})
    assert [f.kind for f in found] == [DriftKind.SET_NOT_PROVISIONED, DriftKind.ASSIGNMENT_REMOVED]
    assert found[1].principal == "USER alice (u-1)"
    plan = drift_plan("m", 1, ours, DriftRead("t", found, ["222"]))
    assert plan is not None
    assert [a.kind for a in plan.actions] == ["provision-permission-set", "create-assignment"]
    assert plan.actions[1].params == ours.assignments[("222", "Readers", "USER", "u-1")]
    assert drift_plan("m", 1, ours, DriftRead("t", [], ["222"])) is None


def test_the_drift_marker_is_in_the_content_only_for_drift_plans() -> None:
    ours = _ours()
    found = account_findings(ours, "111", {"Readers": "arn:ps"}, set(), set(), {})
    plan = drift_plan("m", 1, ours, DriftRead("t", found, ["111"]))
    assert plan is not None and "drift" in plan.content()
    again = type(plan).from_content(plan.content())
    assert again.content_hash() == plan.content_hash() and again.is_drift
    plan.drift = None
    assert "drift" not in plan.content()
