"""[permission_sets] boundary in planning: on every set and workload role, a user whose own
boundary differs is held back alone, the spec's policy is required in every account, a changed
boundary updates the organization's sets, and the plan shows it."""

from __future__ import annotations

from dataclasses import asdict

from domain.access_plan import plan_access
from domain.plan import USER_SCOPE, Outcome, user_scoped
from domain.plan_render import render_markdown
from domain.planning import build_plan
from domain.records import IdentityGroup
from domain.role_replacement import plan_replacement
from domain.spec import PermissionSets
from domain.synthesis import synthesize
from domain.waves import OrgPermissionSet
from domain.workloads import Confidence, Placement, Runtime
from tests.tasks.test_synthesis import (
    A1,
    A2,
    READ_ONLY,
    allow,
    customer_policy,
    doc,
    group,
    group_mapping,
    inventory,
    matched,
    user,
)

FENCE = PermissionSets(boundary="/guard/fence").boundary_reference()
POWER_USER = "arn:aws:iam::aws:policy/PowerUserAccess"


def _fence(account_id: str):
    return customer_policy(account_id, "fence", doc(allow("s3:*")), path="/guard/")


def _org(boundary_of_jane: str | None = None):
    """jane and john (same access) in A1, ann in A2; jane may have her own boundary."""
    return [
        inventory(
            A1,
            [
                user("jane", managed=(READ_ONLY,), boundary=boundary_of_jane),
                user("john", managed=(READ_ONLY,)),
            ],
            policies=[_fence(A1), customer_policy(A1, "other", doc(allow("*")))],
        ),
        inventory(A2, [user("ann", managed=(READ_ONLY,))], policies=[_fence(A2)]),
    ]


MAPPINGS = [matched(A1, "jane"), matched(A1, "john"), matched(A2, "ann")]


def test_every_set_carries_the_spec_boundary_and_its_policy_is_required_everywhere():
    # jane's own boundary is the spec's policy: nothing conflicts, and she shares john's set.
    result = synthesize(
        _org(f"arn:aws:iam::{A1}:policy/guard/fence"), MAPPINGS, [], [], boundary=FENCE
    )
    [permission_set] = result.permission_sets
    assert permission_set.permissions_boundary == {
        "customer_managed_policy_reference": {"name": "fence", "path": "/guard/"}
    }
    assert not result.blocking
    assert {(r.account_id, r.name, r.path) for r in result.required_customer_policies} == {
        (A1, "fence", "/guard/"),
        (A2, "fence", "/guard/"),
    }
    # Without a spec boundary, jane's own makes her a set of her own (as before).
    plain = synthesize(_org(f"arn:aws:iam::{A1}:policy/guard/fence"), MAPPINGS, [], [])
    assert sorted(bool(p.permissions_boundary) for p in plain.permission_sets) == [False, True]


def test_a_user_with_another_boundary_is_held_back_alone():
    other = f"arn:aws:iam::{A1}:policy/other"
    invs = _org(other)
    result = synthesize(invs, MAPPINGS, [], [], boundary=FENCE)
    [conflict] = [f for f in result.findings if f.kind == "boundary-conflict"]
    assert conflict.severity == "blocking" and user_scoped(conflict)
    assert conflict.details["scope"] == USER_SCOPE and conflict.subject == "user jane"
    assert other in conflict.message and "/guard/fence" in conflict.message
    assert {a.principal_id for a in result.assignments} == {"id-john", "id-ann"}

    plan = build_plan(
        migration="m",
        inventory_snapshot_id=1,
        mapping_run_id=1,
        inventories=invs,
        user_mappings=MAPPINGS,
        group_mappings=[],
        synthesis=result,
        settings={"permissions_boundary": FENCE},
    )
    outcomes = {u.user: u.outcome for u in plan.users}
    assert outcomes == {
        "jane": Outcome.SKIP_BLOCKED,
        "john": Outcome.MIGRATE,
        "ann": Outcome.MIGRATE,
    }
    assert plan.blocking == []  # the plan stays approvable for everyone else
    markdown = render_markdown(plan, {"plan_id": 1})
    assert "**Permissions boundary** (every permission set and every role iamc creates): " in (
        markdown
    )
    assert "`/guard/fence (customer-managed, in each account)`" in markdown
    assert "**boundary-conflict**" in markdown and "user jane" in markdown
    [row] = [line for line in markdown.splitlines() if line.startswith("| `ReadOnlyAccess")]
    assert "/guard/fence (customer-managed, in each account)" in row


def test_an_aws_managed_spec_boundary_matches_the_same_arn_only():
    boundary = PermissionSets(boundary=POWER_USER).boundary_reference()
    same = synthesize(_org(POWER_USER), MAPPINGS, [], [], boundary=boundary)
    assert not same.findings and len(same.permission_sets) == 1
    assert same.required_customer_policies == []
    other = synthesize(
        _org(f"arn:aws:iam::{A1}:policy/guard/fence"), MAPPINGS, [], [], boundary=boundary
    )
    assert [f.kind for f in other.blocking] == ["boundary-conflict"]


def test_a_member_whose_boundary_is_the_spec_keeps_the_group_route():
    developers = group("developers", managed=(READ_ONLY,))
    members = [
        user("alice", groups=("developers",), boundary=f"arn:aws:iam::{A1}:policy/guard/fence"),
        user("bob", groups=("developers",)),
    ]
    result = synthesize(
        [inventory(A1, members, [developers], [_fence(A1)])],
        [matched(A1, "alice"), matched(A1, "bob")],
        [group_mapping(A1, "developers", "gid-devs")],
        [
            IdentityGroup(
                group_id="gid-devs", display_name="devs", member_ids=["id-alice", "id-bob"]
            )
        ],
        boundary=FENCE,
    )
    assert [(a.principal_type, a.principal_id) for a in result.assignments] == [
        ("GROUP", "gid-devs")
    ]
    assert result.permission_sets[0].permissions_boundary == FENCE


def test_changing_the_spec_boundary_updates_the_sets_this_migration_created():
    before = synthesize(_org(), MAPPINGS, [], [])
    [created] = before.permission_sets
    organization = {
        created.fingerprint: OrgPermissionSet(
            name=created.name,
            fingerprint=created.fingerprint,
            definition=asdict(created),
            ours=True,
            created_by="plan 1",
            accounts=[A1, A2],
        )
    }
    after = synthesize(_org(), MAPPINGS, [], [], boundary=FENCE)
    access = plan_access(
        inventories=_org(),
        user_mappings=MAPPINGS,
        group_mappings=[],
        synthesis=after,
        organization=organization,
    )
    [update] = [a for a in access.actions if a.kind == "update-permission-set"]
    assert update.target == created.name  # the same set, not a new one
    assert update.params["changes"] == ["permissions boundary differs"]
    assert update.params["definition"]["permissions_boundary"] == FENCE
    assert update.params["previous"]["permissions_boundary"] is None
    # Each account that has it is provisioned again, and needs the boundary policy first.
    provisions = [a for a in access.actions if a.kind == "provision-permission-set"]
    assert sorted(a.account_id for a in provisions) == [A1, A2]
    for action in provisions:
        assert {"name": "fence", "path": "/guard/"} in action.params["required_customer_policies"]


def test_workload_roles_get_the_spec_boundary_resolved_in_their_account():
    placement = Placement(A2, "fn", Runtime.LAMBDA, Confidence.HIGH)
    role, findings = plan_replacement(placement, user("fn", managed=(READ_ONLY,)), {}, FENCE)
    assert role is not None and not findings
    assert role.permissions_boundary_arn == f"arn:aws:iam::{A2}:policy/guard/fence"
    # Without a spec boundary the role keeps the user's own (as before).
    own = f"arn:aws:iam::{A2}:policy/own"
    role, _ = plan_replacement(placement, user("fn", boundary=own), {})
    assert role is not None and role.permissions_boundary_arn == own
    # With one, a different own boundary means no role: which is stricter can't be known.
    role, [conflict] = plan_replacement(placement, user("fn", boundary=own), {}, FENCE)
    assert role is None and conflict.kind == "boundary-conflict" and user_scoped(conflict)
    assert conflict.details["stages"] == ["replace"]


def test_the_plan_settings_carry_the_boundary_only_when_the_spec_has_one():
    from domain.spec import MigrationSpec
    from flows.plan import _plan_settings

    base = {"name": "m", "state": "sqlite:///s.db"}
    assert "permissions_boundary" not in _plan_settings(MigrationSpec(**base))
    spec = MigrationSpec(**base, permission_sets={"boundary": "/guard/fence"})
    assert _plan_settings(spec)["permissions_boundary"] == FENCE
