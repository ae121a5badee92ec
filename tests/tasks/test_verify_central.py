"""Verify of central roles against the sandbox: planned people switch in, nobody else does.

The sandbox, not moto in-process: moto does not implement SimulatePrincipalPolicy, the
sandbox does (the identity side). The trust side is checked in code on the live trust.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from domain.central_roles import assume_policy, trust_policy
from domain.central_spec import Central
from domain.plan import Outcome, Plan, PlanAction, UserPlan
from domain.stages import Stage
from sandbox.server import Sandbox
from tasks.verify_central import RoleCheck, verify_member_roles


class AtSandbox(boto3.Session):
    """A session whose clients talk to the sandbox."""

    def __init__(self, url: str, **credentials: Any):
        super().__init__(region_name="us-east-1", **credentials)
        self._url = url

    def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().client(*args, endpoint_url=self._url, **kwargs)


@dataclass
class Org:
    url: str
    central: str
    member: str
    sessions: dict[str, AtSandbox]

    def iam(self, account_id: str) -> Any:
        return self.sessions[account_id].client("iam")


@pytest.fixture(scope="module")
def org() -> Iterator[Org]:
    with Sandbox(port=0) as sandbox:
        sandbox.reset()  # moto's backends are this process's: an earlier module's org is there
        management = AtSandbox(
            sandbox.url, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        organizations = management.client("organizations")
        organizations.create_organization(FeatureSet="ALL")
        accounts = [
            organizations.create_account(AccountName=name, Email=f"{name}@example.com")[
                "CreateAccountStatus"
            ]["AccountId"]
            for name in ("identity", "dev")
        ]
        sessions = {}
        for account in accounts:
            creds = management.client("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                RoleSessionName="test",
            )["Credentials"]
            sessions[account] = AtSandbox(
                sandbox.url,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )
        yield Org(sandbox.url, accounts[0], accounts[1], sessions)


@dataclass
class World:
    """People in the central account, a role per access in the member account, and the plan."""

    org: Org
    central: Central
    people: dict[str, str]  # name -> user ARN
    roles: dict[str, str]  # access -> role name
    plan: Plan
    statuses: dict[str, str]

    def verify(self) -> dict[tuple[str, str], RoleCheck]:
        checks = verify_member_roles(
            self.plan,
            self.org.member,
            self.statuses,
            self.org.sessions[self.org.member],
            self.org.sessions[self.org.central],
            self.central,
        )
        return {(c.identity, c.role_name): c for c in checks}

    def set_trust(self, access: str, document: dict[str, Any]) -> None:
        self.org.iam(self.org.member).update_assume_role_policy(
            RoleName=self.roles[access], PolicyDocument=json.dumps(document)
        )


def build(
    org: Org,
    holders: dict[str, list[str]],
    bystanders: tuple[str, ...] = (),
    without_mfa: tuple[str, ...] = (),
) -> World:
    """``holders``: access -> the people holding it (each gets a central user with a virtual
    MFA device, but ``without_mfa``, a group per access, and a member role trusting exactly
    its holders). ``bystanders``: more central users, planned for nothing."""
    tag = uuid.uuid4().hex[:6]
    central = Central(account=org.central, role_prefix=f"t{tag}-")
    iam = org.iam(org.central)
    people: dict[str, str] = {}
    for name in sorted({p for names in holders.values() for p in names} | set(bystanders)):
        user = f"{name}-{tag}"
        people[name] = iam.create_user(UserName=user, Path="/people/")["User"]["Arn"]
        if name not in without_mfa:
            serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"][
                "SerialNumber"
            ]
            iam.enable_mfa_device(
                UserName=user,
                SerialNumber=serial,
                AuthenticationCode1="123456",
                AuthenticationCode2="654321",
            )
    actions, assignments, users, roles = [], [], [], {}
    for access, names in holders.items():
        role_name = f"{central.role_prefix}{access}"
        role_arn = f"arn:aws:iam::{org.member}:role{central.role_path}{role_name}"
        principals = [people[n] for n in names]
        trust = trust_policy(principals, central)
        org.iam(org.member).create_role(
            RoleName=role_name, Path=central.role_path, AssumeRolePolicyDocument=json.dumps(trust)
        )
        group = role_name
        iam.create_group(GroupName=group, Path=central.role_path)
        iam.put_group_policy(
            GroupName=group,
            PolicyName=f"assume-{access}",
            PolicyDocument=json.dumps(assume_policy([role_arn], central)),
        )
        for name in names:
            iam.add_user_to_group(GroupName=group, UserName=f"{name}-{tag}")
            assignments.append(
                {
                    "account_id": org.member,
                    "permission_set_name": access,
                    "principal_type": "USER",
                    "principal_id": people[name],
                    "principal_name": f"{name}-{tag}",
                }
            )
            users.append(
                UserPlan(
                    org.member,
                    f"{name}-old",
                    "human",
                    Outcome.MIGRATE,
                    "mapped",
                    "fp",
                    identity=f"{name}-{tag}",
                    permission_sets=[access],
                )
            )
        roles[access] = role_name
        actions.append(
            PlanAction(
                id=f"provision:create-member-role:{org.member}:{role_name}",
                stage=Stage("provision"),
                kind="create-member-role",
                account_id=org.member,
                target=role_name,
                target_fingerprint="fp",
                params={
                    "role_name": role_name,
                    "path": central.role_path,
                    "access": access,
                    "trust_policy": trust,
                    "principals": principals,
                },
            )
        )
    plan = Plan(
        migration="m",
        inventory_snapshot_id=1,
        mapping_run_id=None,
        settings={"target": "central-roles"},
        users=users,
        actions=actions,
        permission_sets=[],
        assignments=assignments,
        required_customer_policies=[],
        findings=[],
    )
    statuses = {a.id: "succeeded" for a in actions}
    return World(org, central, people, roles, plan, statuses)


def test_planned_people_switch_in_with_mfa_and_nobody_else_is_trusted(org: Org) -> None:
    world = build(org, {"team": ["alice"], "ops": ["bob", "carol"]})
    checks = world.verify()
    tag = world.central.role_prefix
    assert sorted(checks) == [
        (f"alice-{tag[1:-1]}", f"{tag}team"),
        (f"bob-{tag[1:-1]}", f"{tag}ops"),
        (f"carol-{tag[1:-1]}", f"{tag}ops"),
    ]
    for (person, _), check in checks.items():
        assert check.ok, check.problems
        assert f"{person} may switch in with MFA" in check.checked, check.checked
        assert f"{person} has an MFA device" in check.checked, check.checked
        assert "trust names no root, '*' or foreign principal" in check.checked, check.checked
    alice = checks[(f"alice-{tag[1:-1]}", f"{tag}team")]
    assert alice.iam_users == ["alice-old"] and alice.access == "team"


def test_a_trust_widened_to_the_central_accounts_root_fails_verification(org: Org) -> None:
    world = build(org, {"team": ["alice"], "ops": ["bob"]})
    root = f"arn:aws:iam::{org.central}:root"
    # Alice is still named (she gets in), but so is the root: anyone of the central account
    # whose own policies allow it could switch in.
    world.set_trust("team", trust_policy([world.people["alice"], root], world.central))
    checks = {k[1]: c for k, c in world.verify().items()}
    team = checks[world.roles["team"]]
    assert any("may switch in with MFA" in c for c in team.checked)
    [problem] = team.problems
    assert f"root {root}" in problem and "lets others in" in problem
    assert f"must name only {world.people['alice']}" in problem
    assert checks[world.roles["ops"]].ok


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        ("*", "any principal ('*')"),
        ("arn:aws:iam::111122223333:role/vendor", "arn:aws:iam::111122223333:role/vendor"),
    ],
)
def test_a_trust_to_anyone_or_a_foreign_principal_fails_verification(
    org: Org, principal: str, expected: str
) -> None:
    world = build(org, {"team": ["dave"]})
    trust = trust_policy([world.people["dave"]], world.central)
    trust["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    )
    world.set_trust("team", trust)
    [check] = world.verify().values()
    assert any("may switch in with MFA" in c for c in check.checked)
    assert check.problems and all("lets others in" in p for p in check.problems)
    assert any(expected in p for p in check.problems), check.problems


def test_a_trust_without_the_mfa_condition_fails_verification(org: Org) -> None:
    world = build(org, {"team": ["erin"]})
    trust = trust_policy([world.people["erin"]], world.central)
    del trust["Statement"][0]["Condition"]
    world.set_trust("team", trust)
    [check] = world.verify().values()
    assert not check.ok
    assert not any("may switch in" in c for c in check.checked)
    assert any(
        "does not let erin-" in p and "with Bool aws:MultiFactorAuthPresent true" in p
        for p in check.problems
    ), check.problems
    assert any("without Bool aws:MultiFactorAuthPresent = true" in p for p in check.problems)


def test_a_person_without_an_mfa_device_fails_verification(org: Org) -> None:
    world = build(org, {"team": ["judy", "kim"]}, without_mfa=("judy",))
    checks = {k[0].split("-")[0]: c for k, c in world.verify().items()}
    [problem] = checks["judy"].problems
    assert problem.startswith(f"central user judy-{world.central.role_prefix[1:-1]} has no MFA")
    assert "the member roles require MFA, so they could not switch in" in problem
    assert checks["kim"].ok, checks["kim"].problems


def test_a_trust_without_the_person_and_missing_central_policy_are_told_apart(org: Org) -> None:
    world = build(org, {"team": ["frank"], "ops": ["grace"]})
    # The team role trusts grace instead of frank.
    world.set_trust("team", trust_policy([world.people["grace"]], world.central))
    # Grace is no longer in the ops group: her own policies don't allow the ops role.
    tag = world.central.role_prefix
    org.iam(org.central).remove_user_from_group(
        GroupName=world.roles["ops"], UserName=f"grace-{tag[1:-1]}"
    )
    checks = {k[1]: c for k, c in world.verify().items()}
    # Frank is refused by the trust; grace is a central user (another wave's person may be
    # named), so no one else is let in.
    [team] = checks[world.roles["team"]].problems
    assert "trust policy" in team and "does not let frank-" in team
    [ops] = checks[world.roles["ops"]].problems
    assert "policies in the central account" in ops and "put-access-policy" in ops
    assert "implicitDeny" in ops


def test_a_role_not_provisioned_or_gone_is_a_problem(org: Org) -> None:
    world = build(org, {"team": ["heidi"], "ops": ["ivan"]})
    team, ops = (a for a in world.plan.actions)
    world.statuses[team.id] = "failed"
    org.iam(org.member).delete_role(RoleName=world.roles["ops"])
    checks = {k[1]: c for k, c in world.verify().items()}
    assert "was not provisioned (create-member-role failed)" in checks[team.target].problems[0]
    assert "does not exist in" in checks[ops.target].problems[0]
