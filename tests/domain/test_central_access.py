"""central-roles planning: one member role per (account, access) trusting exactly its people,
the central account's groups, assume policies and memberships, and what blocks them."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.plan import synthetic_org
from domain.access_plan import AccessPlan
from domain.central_access import central_access
from domain.central_roles import MFA_CONDITION, role_arn
from domain.central_spec import Central
from domain.plan import Outcome, Plan, PlanAction, Stage
from domain.plan_render import render_markdown
from domain.planning import build_plan
from domain.records import (
    Account,
    AccountInventory,
    AttachedPolicy,
    InlinePolicy,
    ManagedPolicy,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.synthesis import synthesize
from domain.waves import (
    JournalUse,
    central_accesses,
    central_role_accounts,
    central_role_principals,
)

C, A, B = "999999999999", "111111111111", "222222222222"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
S3 = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}
CREATED = datetime(2025, 1, 1, tzinfo=UTC)
SETTINGS = {"inactive_days": 90, "bake_days": 14}


def _user(account: str, name: str, klass: UserClass = UserClass.HUMAN, s3: bool = False) -> User:
    return User(
        name=name,
        user_id=f"AIDA{account[:3]}{name.upper().replace('.', '').replace('-', '')}",
        arn=f"arn:aws:iam::{account}:user/{name}",
        created=CREATED,
        password_enabled=True,
        attached_policies=[AttachedPolicy(READ_ONLY, "ReadOnlyAccess")],
        inline_policies=[InlinePolicy("s3", S3)] if s3 else [],
        user_class=klass,
        class_reason=f"{klass} by test",
    )


def _inventories(extra_in_a: int = 0) -> list[AccountInventory]:
    policy = ManagedPolicy(READ_ONLY, "ReadOnlyAccess", aws_managed=True, document=S3)
    people_a = [
        _user(A, "alice"),
        _user(A, "bob"),
        _user(A, "carol", s3=True),
        _user(A, "breakglass", UserClass.PROTECTED),
        *(_user(A, f"person-{n:03d}") for n in range(extra_in_a)),
    ]
    return [
        AccountInventory(account=Account(A, "alpha"), users=people_a, managed_policies=[policy]),
        AccountInventory(
            account=Account(B, "beta"), users=[_user(B, "alice")], managed_policies=[policy]
        ),
    ]


def _central_arn(name: str, arrive: str) -> str:
    return f"arn:aws:iam::{C}:{'user' if arrive == 'iam-users' else 'role'}/{name}"


def _mappings(
    inventories: list[AccountInventory],
    arrive: str = "iam-users",
    as_: dict[str, str] | None = None,
) -> list[UserMapping]:
    """Every human maps to the central principal of its name (or ``as_[name]``)."""
    found = []
    for inventory in inventories:
        for user in inventory.users:
            if user.user_class != UserClass.HUMAN:
                continue
            name = (as_ or {}).get(user.name, user.name)
            found.append(
                UserMapping(
                    inventory.account.account_id,
                    user.name,
                    MatchStatus.MATCHED,
                    "tag:email",
                    _central_arn(name, arrive),
                    name,
                )
            )
    return found


def _plan(
    inventories: list[AccountInventory],
    mappings: list[UserMapping],
    *,
    arrive: str = "iam-users",
    earlier_roles: dict[str, list[str]] | None = None,
    earlier_principals: dict[tuple[str, str], list[str]] | None = None,
    central: bool = True,
) -> Plan:
    settings: dict[str, Any] = dict(SETTINGS)
    if central:
        settings |= {
            "target": "central-roles",
            "central": Central(account=C, arrive=arrive).model_dump(),  # type: ignore[arg-type]
        }
    return build_plan(
        migration="m1",
        inventory_snapshot_id=1,
        mapping_run_id=2,
        inventories=inventories,
        user_mappings=mappings,
        group_mappings=[],
        synthesis=synthesize(inventories, mappings, [], []),
        settings=settings,
        earlier_roles=earlier_roles,
        earlier_principals=earlier_principals,
    )


def _of(plan: Plan, kind: str) -> list[PlanAction]:
    return [a for a in plan.actions if a.kind == kind]


def _plan_user(plan: Plan, account: str, user: str) -> Any:
    return next(u for u in plan.users if (u.account_id, u.user) == (account, user))


def _access_of(plan: Plan, account: str, user: str) -> str:
    (name,) = next(
        u for u in plan.users if (u.account_id, u.user) == (account, user)
    ).permission_sets
    return name


def test_one_role_per_account_and_access_one_group_per_access_one_membership_per_person():
    plan = _plan(_inventories(), _mappings(_inventories()))
    read_only, with_s3 = _access_of(plan, A, "alice"), _access_of(plan, A, "carol")
    assert read_only != with_s3 and _access_of(plan, B, "alice") == read_only

    roles = {(a.account_id, a.params["access"]): a for a in _of(plan, "create-member-role")}
    assert sorted(roles) == sorted([(A, read_only), (A, with_s3), (B, read_only)])
    assert {a.account_id: a for a in _of(plan, "create-access-group")}.keys() == {C}
    assert sorted(a.params["access"] for a in _of(plan, "create-access-group")) == sorted(
        [read_only, with_s3]
    )
    members = sorted(
        (a.params["group_name"], a.params["user_name"]) for a in _of(plan, "add-group-member")
    )
    assert members == sorted(
        [(f"iamc-{read_only}", "alice"), (f"iamc-{read_only}", "bob"), (f"iamc-{with_s3}", "carol")]
    )
    assert all(a.stage == Stage.PROVISION for a in plan.actions if a.kind in _KINDS)
    # No Identity Center action is left in a central-roles plan.
    assert not [a for a in plan.actions if "permission-set" in a.kind or "assignment" in a.kind]


_KINDS = ("create-member-role", "create-access-group", "put-access-policy", "add-group-member")


def test_the_member_role_trusts_exactly_its_people_with_mfa_and_carries_the_access():
    plan = _plan(_inventories(), _mappings(_inventories()))
    read_only = _access_of(plan, A, "alice")
    role = next(
        a
        for a in _of(plan, "create-member-role")
        if (a.account_id, a.params["access"]) == (A, read_only)
    )
    assert role.id == f"provision:create-member-role:{A}:iamc-{read_only}"
    params = role.params
    (statement,) = params["trust_policy"]["Statement"]
    assert statement["Principal"] == {
        "AWS": [_central_arn("alice", "iam-users"), _central_arn("bob", "iam-users")]
    }
    assert statement["Condition"] == MFA_CONDITION
    assert params["principals"] == statement["Principal"]["AWS"]
    assert params["max_session_duration"] == 3600 and params["path"] == "/iamc/"
    assert params["managed_policy_arns"] == [READ_ONLY] and params["inline_policy"] is None
    assert {t["Key"]: t["Value"] for t in params["tags"]} == {
        "iamc:migration": "m1",
        "iamc:access": read_only,
        "iamc:created-by": "iam-centralize",
        "iamc:central-account": C,
    }
    with_s3 = next(a for a in _of(plan, "create-member-role") if "s3:*" in str(a.params))
    assert "s3:*" in str(with_s3.params["inline_policy"]["Statement"])
    assert with_s3.params["inline_policy_name"] == "iamc-access"
    # B's role trusts alice alone.
    (in_b,) = [a for a in _of(plan, "create-member-role") if a.account_id == B]
    assert in_b.params["principals"] == [_central_arn("alice", "iam-users")]
    assert not [f for f in plan.findings if f.severity == "blocking"]


def test_the_group_policy_covers_every_account_and_disable_waits_for_role_policy_and_membership():
    plan = _plan(_inventories(), _mappings(_inventories()))
    read_only = _access_of(plan, A, "alice")
    group = f"iamc-{read_only}"
    (policy,) = [a for a in _of(plan, "put-access-policy") if a.params["access"] == read_only]
    assert policy.id == f"provision:put-access-policy:{C}:group:{group}:iamc-assume-{read_only}"
    assert policy.depends_on == [f"provision:create-access-group:{C}:{group}"]
    central = Central(account=C)
    assert policy.params["role_arns"] == sorted(
        [role_arn(A, central, read_only), role_arn(B, central, read_only)]
    )
    assert policy.params["document"]["Statement"][0]["Resource"] == policy.params["role_arns"]
    member = f"provision:add-group-member:{C}:{group}:alice"
    role = f"provision:create-member-role:{A}:{group}"
    disable = [a for a in plan.actions if a.stage == Stage.DISABLE and a.account_id == A]
    alices = [a for a in disable if "alice" in a.id]
    assert alices and all(set(a.depends_on) >= {role, policy.id, member} for a in alices)
    alice = next(u for u in plan.users if (u.account_id, u.user) == (A, "alice"))
    assert alice.outcome == Outcome.MIGRATE and alice.permission_sets == [read_only]


def test_earlier_waves_roles_widen_the_group_policy():
    earlier = "333333333333"
    first = _plan(_inventories(), _mappings(_inventories()))
    read_only = _access_of(first, A, "alice")
    plan = _plan(_inventories(), _mappings(_inventories()), earlier_roles={read_only: [earlier]})
    (policy,) = [a for a in _of(plan, "put-access-policy") if a.params["access"] == read_only]
    assert role_arn(earlier, Central(account=C), read_only) in policy.params["role_arns"]
    # No role is planned there: the earlier wave made it.
    assert earlier not in {a.account_id for a in _of(plan, "create-member-role")}


def test_a_trust_policy_too_large_holds_back_the_role_and_its_people():
    inventories = _inventories(extra_in_a=60)
    plan = _plan(inventories, _mappings(inventories))
    read_only = _access_of(_plan(_inventories(), _mappings(_inventories())), A, "alice")
    (finding,) = [f for f in plan.blocking if f.kind == "quota-trust-policy-size"]
    assert finding.account_id == A and finding.details["characters"] > 2048
    assert plan.blocking  # the plan can't be approved as it is
    held = {(A, read_only)}
    assert not [
        a for a in _of(plan, "create-member-role") if (a.account_id, a.params["access"]) in held
    ]
    for user in plan.users:
        if user.account_id == A and user.user in ("alice", "bob", "person-000"):
            assert user.outcome == Outcome.SKIP_BLOCKED, user
            assert "quota-trust-policy-size" in user.reason
    assert not [
        a
        for a in plan.actions
        if a.stage == Stage.DISABLE and ":alice:" in a.id and a.account_id == A
    ]
    # carol's role in A and alice's in B are still planned, and alice is still in the group
    # (she keeps B), while bob, with nothing left, is not.
    assert {(a.account_id, a.params["access"]) for a in _of(plan, "create-member-role")} == {
        (A, _access_of(plan, A, "carol")),
        (B, read_only),
    }
    members = {a.params["user_name"] for a in _of(plan, "add-group-member")}
    assert "alice" in members and "bob" not in members
    assert any(f.kind == "blocked-access-left-out" for f in plan.findings)
    assert not [
        a
        for a in plan.assignments
        if a["account_id"] == A and a["permission_set_name"] == read_only
    ]


def _hand_built(principal: str, definition: dict[str, Any]) -> AccessPlan:
    assignment = {
        "account_id": A,
        "permission_set_name": definition["name"],
        "principal_type": "USER",
        "principal_id": principal,
        "principal_name": principal.rsplit("/", 1)[-1].rsplit(":", 1)[-1],
        "reason": "user alice",
    }
    action_id = f"provision:create-assignment:{A}:{definition['name']}:USER:{principal}"
    return AccessPlan(
        findings=[],
        actions=[
            PlanAction(action_id, Stage.PROVISION, "create-assignment", A, "x", "f", assignment)
        ],
        permission_sets=[definition],
        assignments=[assignment],
        required_customer_policies=[{"account_id": A, "name": "team", "path": "/p/"}],
        assignment_ids={(A, "alice"): [action_id]},
        permission_sets_of_user={(A, "alice"): [definition["name"]]},
        blocked={},
    )


def _definition(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Dev",
        "description": "d",
        "fingerprint": "fp",
        "inline_policy": None,
        "aws_managed_policy_arns": [READ_ONLY],
        "customer_managed_policies": [{"name": "team", "path": "/p/"}],
        "permissions_boundary": {
            "customer_managed_policy_reference": {"name": "fence", "path": "/"}
        },
        **fields,
    }


def test_customer_managed_policies_and_boundary_resolve_in_the_role_account():
    access = _hand_built(_central_arn("alice", "iam-users"), _definition())
    planned = central_access(access, central=Central(account=C), migration="m1", earlier_roles=None)
    (role,) = [a for a in planned.actions if a.kind == "create-member-role"]
    assert role.params["managed_policy_arns"] == sorted(
        [READ_ONLY, f"arn:aws:iam::{A}:policy/p/team"]
    )
    assert role.params["permissions_boundary_arn"] == f"arn:aws:iam::{A}:policy/fence"
    assert planned.required_customer_policies == access.required_customer_policies
    assert planned.permission_sets_of_user == {(A, "alice"): ["Dev"]}
    assert set(planned.assignment_ids[(A, "alice")]) == {
        role.id,
        f"provision:put-access-policy:{C}:group:iamc-Dev:iamc-assume-Dev",
        f"provision:add-group-member:{C}:iamc-Dev:alice",
    }


@pytest.mark.parametrize(
    ("principal", "definition", "kind"),
    [
        (f"arn:aws:iam::{C}:root", _definition(), "trust-policy"),
        (
            _central_arn("alice", "iam-users"),
            _definition(
                aws_managed_policy_arns=[f"arn:aws:iam::aws:policy/P{n}" for n in range(10)]
            ),
            "quota-managed-policies-per-role",
        ),
        (
            _central_arn("alice", "iam-users"),
            _definition(
                inline_policy={
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": f"s3:Get{'x' * 40}{n}", "Resource": "*"}
                        for n in range(200)
                    ],
                }
            ),
            "quota-role-inline-size",
        ),
    ],
)
def test_a_blocking_finding_holds_the_role_back_with_its_people(
    principal: str, definition: dict[str, Any], kind: str
):
    access = _hand_built(principal, definition)
    planned = central_access(access, central=Central(account=C), migration="m1", earlier_roles=None)
    assert [f.kind for f in planned.findings if f.severity == "blocking"] == [kind]
    assert kind in planned.blocked[(A, "alice")]
    assert planned.actions == [] and planned.assignment_ids == {}
    assert planned.assignments == [] and planned.permission_sets == []


def test_a_group_policy_over_its_quota_holds_back_the_access_everywhere():
    access = _hand_built(_central_arn("alice", "iam-users"), _definition())
    earlier = {"Dev": [f"{n:012d}" for n in range(200)]}
    planned = central_access(
        access, central=Central(account=C), migration="m1", earlier_roles=earlier
    )
    assert [f.kind for f in planned.findings if f.severity == "blocking"] == [
        "quota-group-inline-size"
    ]
    assert planned.actions == [] and (A, "alice") in planned.blocked


def test_saml_roles_put_the_policy_on_each_federated_role_and_warn_when_one_is_shared():
    inventories = _inventories()
    # alice and carol (different access) both arrive as the federated role "dev".
    mappings = _mappings(inventories, "saml-roles", as_={"alice": "dev", "carol": "dev"})
    plan = _plan(inventories, mappings, arrive="saml-roles")
    assert not _of(plan, "create-access-group") and not _of(plan, "add-group-member")
    policies = sorted(
        (a.params["principal_type"], a.params["principal_name"], a.params["access"])
        for a in _of(plan, "put-access-policy")
    )
    read_only = _access_of(plan, A, "bob")
    (with_s3,) = {a.params["access"] for a in _of(plan, "create-member-role")} - {read_only}
    # alice arrives as "dev", which carol's access is given to as well: she gains it.
    assert _plan_user(plan, A, "alice").permission_sets == sorted([read_only, with_s3])
    assert policies == sorted(
        [("role", "dev", read_only), ("role", "dev", with_s3), ("role", "bob", read_only)]
    )
    dev = next(
        a for a in _of(plan, "put-access-policy") if a.target == f"role dev: iamc-assume-{with_s3}"
    )
    assert dev.id == f"provision:put-access-policy:{C}:role:dev:iamc-assume-{with_s3}"
    assert dev.depends_on == []
    role = next(
        a
        for a in _of(plan, "create-member-role")
        if a.account_id == A and a.params["access"] == read_only
    )
    (statement,) = role.params["trust_policy"]["Statement"]
    assert "Condition" not in statement  # federated sessions carry no MFA key
    assert statement["Principal"]["AWS"] == [
        _central_arn("bob", "saml-roles"),
        _central_arn("dev", "saml-roles"),
    ]
    (shared,) = [f for f in plan.findings if f.kind == "federated-role-shared"]
    assert shared.severity == "warning" and "alice" in shared.message and "carol" in shared.message
    assert not plan.blocking


def test_a_federated_role_of_one_person_is_not_shared():
    inventories = _inventories()
    plan = _plan(inventories, _mappings(inventories, "saml-roles"), arrive="saml-roles")
    assert not [f for f in plan.findings if f.kind == "federated-role-shared"]


def test_the_plan_reads_as_central_roles():
    plan = _plan(_inventories(), _mappings(_inventories()))
    text = render_markdown(plan, {"plan_id": 1, "hash": "h"})
    assert "## Central roles" in text and "## Permission sets" not in text
    assert "migrate to central roles" in text and "migrate to Identity Center" not in text
    read_only = _access_of(plan, A, "alice")
    assert f"`/iamc/iamc-{read_only}`" in text
    assert f"`iamc-{read_only}` trusts alice, bob" in text


def _shapes() -> list[tuple[list[AccountInventory], list[UserMapping]]]:
    shapes = [(_inventories(), _mappings(_inventories()))]
    for accounts, users in ((3, 6), (4, 9)):
        inventories, mappings, _ = synthetic_org(accounts, users)
        shapes.append((inventories, mappings))
    return shapes


@pytest.mark.parametrize("shape", range(3))
def test_both_targets_classify_the_same_people_and_the_same_accesses(shape: int):
    inventories, mappings = _shapes()[shape]
    identity_center = _plan(copy.deepcopy(inventories), mappings, central=False)
    # The same people mapped to central users instead of identity-store users.
    central_mappings = [
        UserMapping(
            m.account_id,
            m.iam_user,
            m.status,
            m.rule,
            _central_arn(m.identity_user_name or m.iam_user, "iam-users"),
            m.identity_user_name,
        )
        for m in mappings
    ]
    central = _plan(copy.deepcopy(inventories), central_mappings)
    assert [(u.account_id, u.user, u.outcome, u.permission_sets) for u in central.users] == [
        (u.account_id, u.user, u.outcome, u.permission_sets) for u in identity_center.users
    ]
    assert Counter(u.outcome for u in central.users)[Outcome.MIGRATE] > 0
    accesses = {a.params["access"] for a in _of(central, "create-member-role")}
    assert accesses == {ps["name"] for ps in identity_center.permission_sets}
    # One role per (account, set) Identity Center provisions.
    assert sorted(
        (a.account_id, a.params["access"]) for a in _of(central, "create-member-role")
    ) == sorted((a.account_id, a.target) for a in _of(identity_center, "provision-permission-set"))


def _use(kind: str, account: str, access: str, **fields: Any) -> JournalUse:
    base: dict[str, Any] = {
        "plan_id": 1,
        "wave": "w1",
        "kind": kind,
        "status": "succeeded",
        "account_id": account,
        "target": f"iamc-{access}",
        "params": {"access": access, "fingerprint": f"fp-{access}", "inline_policy": None},
        "existed_before": False,
        "started": CREATED,
        "finished": CREATED,
    }
    return JournalUse(**(base | fields))


def test_earlier_roles_are_the_done_member_roles_of_plans_not_rolled_back():
    uses = [
        _use("create-member-role", A, "Dev"),
        _use("create-member-role", B, "Dev", status="adopted", plan_id=2),
        _use("create-member-role", "333333333333", "Dev", plan_id=3, released=True),
        _use("create-member-role", "444444444444", "Dev", status="failed"),
        _use("create-member-role", A, "Ops", status="rolled-back"),
        _use("create-access-group", C, "Dev"),
    ]
    assert central_role_accounts(uses) == {"Dev": [A, B]}
    known = central_accesses(uses)
    assert list(known) == ["fp-Dev"] and known["fp-Dev"].name == "Dev"
    assert known["fp-Dev"].accounts == [A, B]


def test_member_roles_count_against_the_accounts_role_quota_unless_an_earlier_wave_made_them():
    inventories = _inventories()
    inventories[0].roles, inventories[0].roles_quota = 999, 1000  # A gets two roles
    plan = _plan(inventories, _mappings(inventories))
    (quota,) = [f for f in plan.findings if f.kind == "quota-roles"]
    assert quota.account_id == A and quota.details["adding"] == 2
    read_only = _access_of(plan, A, "alice")
    again = _plan(inventories, _mappings(inventories), earlier_roles={read_only: [A]})
    assert not [f for f in again.findings if f.kind == "quota-roles"]


def _done(plan: Plan, plan_id: int, **fields: Any) -> list[JournalUse]:
    """The journal rows of a plan whose provision stage was applied (every action done)."""
    return [
        JournalUse(
            plan_id=plan_id,
            wave="w1",
            kind=a.kind,
            status="succeeded",
            account_id=a.account_id,
            target=a.target,
            params=a.params,
            existed_before=False,
            started=CREATED,
            finished=CREATED,
            **fields,
        )
        for a in plan.actions
        if a.stage == Stage.PROVISION
    ]


def test_a_re_plan_after_the_first_people_were_disabled_keeps_them_in_the_trust():
    first = _plan(_inventories(), _mappings(_inventories()))
    read_only = _access_of(first, A, "alice")
    alice, bob, dave = (_central_arn(n, "iam-users") for n in ("alice", "bob", "dave"))
    # The same wave planned again once alice and bob were disabled: they are unused now (not
    # planned), and dave arrived in A with the same access. (B's alice is still to come.)
    inventories = _inventories()[:1]
    people = {u.name: u for u in inventories[0].users}
    for name in ("alice", "bob", "carol"):
        people[name].user_class = UserClass.UNUSED
    inventories[0].users.append(_user(A, "dave"))
    uses = _done(first, 1)
    earlier = central_role_principals(uses)
    assert earlier[(A, f"iamc-{read_only}")] == [alice, bob]
    assert earlier[(B, f"iamc-{read_only}")] == [alice]

    plan = _plan(
        inventories,
        _mappings(inventories),
        earlier_roles=central_role_accounts(uses),
        earlier_principals=earlier,
    )

    (role,) = _of(plan, "create-member-role")
    assert (role.account_id, role.params["access"]) == (A, read_only)
    assert role.params["trust_policy"]["Statement"][0]["Principal"] == {"AWS": [alice, bob, dave]}
    assert role.params["principals"] == [alice, bob, dave]
    assert role.params["earlier_principals"] == [alice, bob]
    # Only dave joins the group now; alice and bob are members since the first plan.
    assert [a.params["user_name"] for a in _of(plan, "add-group-member")] == ["dave"]
    markdown = render_markdown(plan, {"plan_id": 2, "hash": "h"})
    assert "dave (kept from earlier plans: alice, bob)" in markdown
    # Without the journal (the bug): the trust would name dave alone.
    alone = _plan(inventories, _mappings(inventories))
    (narrow,) = _of(alone, "create-member-role")
    assert narrow.params["principals"] == [dave] and narrow.params["earlier_principals"] == []


def test_earlier_principals_are_per_account_and_role_of_plans_not_rolled_back():
    first = _plan(_inventories(), _mappings(_inventories()))
    read_only = _access_of(first, A, "alice")
    role = f"iamc-{read_only}"
    alice = _central_arn("alice", "iam-users")
    rolled_back = _done(first, 1, released=True)
    failed = [JournalUse(**{**vars(u), "status": "failed"}) for u in _done(first, 2)]
    assert central_role_principals([*rolled_back, *failed]) == {}
    # A plan whose people are only in B keeps them in B's role, not in A's.
    only_b = [u for u in _done(first, 3) if u.account_id == B]
    assert central_role_principals(only_b) == {(B, role): [alice]}
