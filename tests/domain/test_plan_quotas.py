"""Quotas at plan time, customer-managed references chosen per set, delegated administration."""

from __future__ import annotations

from typing import Any

from domain.permission_set_quotas import role_quota_findings
from domain.plan import Outcome, Plan
from domain.plan_render import render_markdown
from domain.planning import build_plan
from domain.records import (
    Account,
    AccountInventory,
    AttachedPolicy,
    ManagedPolicy,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.synthesis import synthesize

A1, A2, A3 = "111111111111", "222222222222", "333333333333"
MANAGEMENT = "999999999999"
DELEGATED = "888888888888"


def doc(*actions: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
    }


def cmp_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:policy/team/app-read"


def human(account_id: str, name: str, arns: tuple[str, ...] = (), **extra: Any) -> User:
    return User(
        name=name,
        user_id=f"AIDA{account_id[:3]}{name.upper()}",
        arn=f"arn:aws:iam::{account_id}:user/{name}",
        attached_policies=[AttachedPolicy(a, a.rsplit("/", 1)[-1]) for a in arns],
        password_enabled=True,
        user_class=UserClass.HUMAN,
        class_reason="human by test",
        **extra,
    )


def account(account_id: str, users: list[User], document: dict[str, Any] | None = None, **kw):
    policies = []
    if document is not None:
        policies.append(ManagedPolicy(cmp_arn(account_id), "app-read", "/team/", document=document))
    return AccountInventory(
        account=Account(account_id), users=users, managed_policies=policies, **kw
    )


def matched(account_id: str, name: str) -> UserMapping:
    return UserMapping(
        account_id, name, MatchStatus.MATCHED, "username", f"u-{name}", f"{name}@example.com"
    )


def plan_of(invs: list[AccountInventory], maps: list[UserMapping], **kwargs: Any) -> Plan:
    names = ("provisioned", "policy_inventories")
    synthesis_kwargs = {k: kwargs.pop(k) for k in names if k in kwargs}
    return build_plan(
        migration="m",
        inventory_snapshot_id=1,
        mapping_run_id=1,
        inventories=invs,
        user_mappings=maps,
        group_mappings=[],
        synthesis=synthesize(invs, maps, [], [], **synthesis_kwargs),
        settings={},
        **kwargs,
    )


# -- customer-managed policies: reference or inline ------------------------------------------


def test_a_policy_the_same_in_every_account_is_referenced_and_said_why():
    invs = [
        account(A1, [human(A1, "jane", (cmp_arn(A1),))], doc("s3:GetObject")),
        account(A2, [human(A2, "john", (cmp_arn(A2),))], doc("s3:GetObject")),
    ]
    plan = plan_of(invs, [matched(A1, "jane"), matched(A2, "john")])
    [ps] = plan.permission_sets
    assert ps["customer_managed_policies"] == [{"name": "app-read", "path": "/team/"}]
    [choice] = ps["customer_managed_choice"]
    assert choice["choice"] == "reference"
    assert f"2 account(s): {A1}, {A2}" in choice["why"]
    # The provision stage re-checks the planned document live in each account.
    provisions = [a for a in plan.actions if a.kind == "provision-permission-set"]
    for action in provisions:
        [required] = action.params["required_customer_policies"]
        assert required["document_hash"] == choice["document_hash"]
    markdown = render_markdown(plan, {})
    assert "| `/team/app-read` | reference |" in markdown


def test_a_policy_whose_document_differs_where_the_set_already_is_gets_inlined():
    """A set an earlier wave provisioned to A2, where app-read now says something else."""
    here = [account(A1, [human(A1, "jane", (cmp_arn(A1),))], doc("s3:GetObject"))]
    fingerprint = synthesize(here, [matched(A1, "jane")], [], []).permission_sets[0].fingerprint
    everywhere = [
        *here,
        account(A2, [], doc("s3:*")),  # another document
        account(A3, []),  # absent
    ]

    def choose(provisioned: dict[str, list[str]]) -> Plan:
        return plan_of(
            here,
            [matched(A1, "jane")],
            provisioned=provisioned,
            policy_inventories=everywhere,
        )

    plan = choose({fingerprint: [A2, A3]})
    [ps] = plan.permission_sets
    assert ps["customer_managed_policies"] == []
    [choice] = ps["customer_managed_choice"]
    assert choice["choice"] == "inline"
    assert f"another document in {A2}" in choice["why"]
    assert f"absent in {A3}" in choice["why"]
    [statement] = ps["inline_policy"]["Statement"]
    assert "s3:getobject" in str(statement["Action"]).lower()
    assert plan.required_customer_policies == []
    assert "| `/team/app-read` | inline |" in render_markdown(plan, {})
    # Deterministic: the same inputs give the same set; the fingerprint (sharing) is kept.
    again = choose({fingerprint: [A3, A2]})
    assert again.permission_sets == plan.permission_sets
    assert ps["fingerprint"] == fingerprint
    # Where the earlier account has the same document, it stays a reference.
    same = [*here, account(A2, [], doc("s3:GetObject"))]
    kept = plan_of(
        here, [matched(A1, "jane")], provisioned={fingerprint: [A2]}, policy_inventories=same
    )
    assert kept.permission_sets[0]["customer_managed_choice"][0]["choice"] == "reference"


def test_an_inlined_policy_is_held_to_the_inline_quota():
    big = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": f"s3:GetObject{n}", "Resource": f"arn:aws:s3:::b{n}/*"}
            for n in range(300)
        ],
    }
    here = [account(A1, [human(A1, "jane", (cmp_arn(A1),))], big)]
    fingerprint = synthesize(here, [matched(A1, "jane")], [], []).permission_sets[0].fingerprint
    referenced = plan_of(here, [matched(A1, "jane")])
    assert not referenced.blocking
    inlined = plan_of(
        here,
        [matched(A1, "jane")],
        provisioned={fingerprint: [A2]},
        policy_inventories=[*here, account(A2, [])],
    )
    assert [f.kind for f in inlined.findings if f.severity == "blocking"] == ["quota-inline-chars"]
    assert next(u for u in inlined.users if u.user == "jane").outcome == Outcome.SKIP_BLOCKED


# -- each account's IAM role quota ---------------------------------------------------------


def test_roles_beyond_the_account_quota_block_the_plan_naming_the_numbers():
    readonly = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    policy = ManagedPolicy(readonly, "ReadOnlyAccess", aws_managed=True, document=doc("s3:Get*"))

    def plan_with(roles: int) -> Plan:
        inv = AccountInventory(
            account=Account(A1),
            users=[human(A1, "jane", (readonly,))],
            managed_policies=[policy],
            roles=roles,
            roles_quota=1000,
        )
        return plan_of([inv], [matched(A1, "jane")])

    assert not plan_with(999).blocking  # 999 + 1 = 1,000: at the quota, not over
    over = plan_with(1000)
    [finding] = over.blocking
    assert finding.kind == "quota-roles"
    assert f"account {A1}: 1,000 roles + 1 to add > quota 1,000" in finding.message
    assert finding.details == {"roles": 1000, "adding": 1, "limit": 1000}
    # A set an earlier wave provisioned there already has its role (counted in Roles).
    [inventory] = [AccountInventory(Account(A1), roles=1000, roles_quota=1000)]
    provisions = [a for a in over.actions if a.kind == "provision-permission-set"]
    already = {(A1, provisions[0].target)}
    assert role_quota_findings([inventory], over.actions, already) == []
    assert len(role_quota_findings([inventory], over.actions)) == 1


# -- delegated administrator ---------------------------------------------------------------


def test_assignments_into_the_management_account_are_flagged_when_run_as_delegated_admin():
    readonly = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    policy = ManagedPolicy(readonly, "ReadOnlyAccess", aws_managed=True, document=doc("s3:Get*"))
    invs = [
        AccountInventory(
            account=Account(acct),
            users=[human(acct, "jane", (readonly,))],
            managed_policies=[policy],
        )
        for acct in (A1, MANAGEMENT)
    ]
    maps = [matched(A1, "jane"), matched(MANAGEMENT, "jane")]

    from_management = plan_of(
        invs, maps, management_account_id=MANAGEMENT, caller_account_id=MANAGEMENT
    )
    assert {u.outcome for u in from_management.users} == {Outcome.MIGRATE}

    delegated = plan_of(invs, maps, management_account_id=MANAGEMENT, caller_account_id=DELEGATED)
    assert not delegated.blocking  # user-scoped: the plan stays approvable
    [finding] = [f for f in delegated.findings if f.kind == "delegated-admin-management-account"]
    assert finding.severity == "blocking" and finding.account_id == MANAGEMENT
    outcome = {u.account_id: u for u in delegated.users}
    assert outcome[MANAGEMENT].outcome == Outcome.SKIP_BLOCKED
    assert "run from the management account" in outcome[MANAGEMENT].reason
    assert outcome[A1].outcome == Outcome.MIGRATE
    # Nothing is planned in the management account, so nothing fails there at apply.
    assert not [a for a in delegated.actions if a.account_id == MANAGEMENT]
    assert [a for a in delegated.actions if a.account_id == A1]
