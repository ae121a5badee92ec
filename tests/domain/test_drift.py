"""The drift findings and plan, pure: each kind of drift gets the provision stage's own
actions, in an order apply can run, and nothing for an account the read did not reach."""

from __future__ import annotations

from domain.drift import DriftKind, DriftRead, account_findings, drift_plan, set_findings
from domain.waves import JournalUse, OrgPermissionSet, Owned, owned

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


def _adopted(ours: Owned, adopted_assignments: bool = False) -> Owned:
    """``ours`` with its set adopted (found there, never created by a plan)."""
    known = ours.sets["Readers"]
    adopted_set = OrgPermissionSet("Readers", "f-r", known.definition, False, None, known.accounts)
    sets = {"Readers": adopted_set}
    adopted = frozenset(ours.assignments) if adopted_assignments else frozenset()
    return Owned(sets=sets, assignments=ours.assignments, adopted=adopted)


def test_an_adopted_set_that_drifted_is_reported_and_never_changed() -> None:
    ours = _adopted(_ours())
    live = {**ours.sets["Readers"].definition, "session_duration": "PT12H"}
    changed, _ = set_findings(ours, {"Readers": live})
    deleted, _ = set_findings(ours, {"Readers": None})
    stale = account_findings(ours, "111", {"Readers": "arn:ps"}, {"arn:ps"}, {"arn:ps"}, {})
    for found in (changed, deleted, stale[:1]):
        assert "not ours to change" in found[0].text()
        assert drift_plan("m", 1, ours, DriftRead("t", found, ["111"])) is None
    # The assignment a plan created in the adopted set is the migration's: put back, alone.
    plan = drift_plan("m", 1, ours, DriftRead("t", changed + stale, ["111"]))
    assert plan is not None
    assert [a.kind for a in plan.actions] == ["create-assignment"]
    assert plan.actions[0].depends_on == []
    assert any("not ours to change" in f.message for f in plan.findings)


def test_an_adopted_assignment_of_an_adopted_set_is_not_put_back() -> None:
    ours = _adopted(_ours(), adopted_assignments=True)
    found = account_findings(ours, "111", {"Readers": "arn:ps"}, {"arn:ps"}, set(), {})
    assert [f.kind for f in found] == [DriftKind.ASSIGNMENT_REMOVED]
    assert "not ours to change" in found[0].text()
    assert drift_plan("m", 1, ours, DriftRead("t", found, ["111"])) is None


def test_the_journal_says_which_assignments_were_adopted() -> None:
    def use(key: str, status: str) -> JournalUse:
        params = {
            "account_id": key,
            "permission_set_name": "Readers",
            "principal_type": "USER",
            "principal_id": "u-1",
        }
        return JournalUse(1, None, "create-assignment", status, key, "t", params, None, None, None)

    found = owned([use("111", "succeeded"), use("222", "adopted")])
    assert found.adopted == {("222", "Readers", "USER", "u-1")}


def test_drift_provisioning_checks_the_planned_documents_and_the_boundary() -> None:
    ours = _ours()
    definition = ours.sets["Readers"].definition
    definition["customer_managed_policies"] = [{"name": "Ops", "path": "/team/"}]
    definition["permissions_boundary"] = {
        "customer_managed_policy_reference": {"name": "Fence", "path": "/"}
    }
    definition["customer_managed_choice"] = [
        {"policy": "/team/Ops", "choice": "reference", "why": "same", "document_hash": "h-ops"}
    ]
    found = account_findings(ours, "111", {"Readers": "arn:ps"}, {"arn:ps"}, {"arn:ps"}, {})
    plan = drift_plan("m", 1, ours, DriftRead("t", found[:1], ["111"]))
    assert plan is not None
    assert plan.actions[0].params["required_customer_policies"] == [
        {"name": "Fence", "path": "/"},
        {"name": "Ops", "path": "/team/", "document_hash": "h-ops"},
    ]
