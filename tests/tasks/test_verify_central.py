"""Verify of central roles against the sandbox: planned people switch in, nobody else does.

The sandbox, not moto in-process: moto does not implement SimulatePrincipalPolicy, the
sandbox does (with the role's trust policy as the resource policy).
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


def build(org: Org, holders: dict[str, list[str]], bystanders: tuple[str, ...] = ()) -> World:
    """``holders``: access -> the people holding it (each gets a central user, a group per
    access, and a member role trusting exactly its holders). ``bystanders``: more central
    users, planned for nothing."""
    tag = uuid.uuid4().hex[:6]
    central = Central(account=org.central, role_prefix=f"t{tag}-")
    iam = org.iam(org.central)
    people: dict[str, str] = {}
    for name in sorted({p for names in holders.values() for p in names} | set(bystanders)):
        people[name] = iam.create_user(UserName=f"{name}-{tag}", Path="/people/")["User"]["Arn"]
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


def test_planned_people_switch_in_with_mfa_and_the_other_is_refused(org: Org) -> None:
    world = build(org, {"team": ["alice"], "ops": ["bob", "carol"]})
    checks = world.verify()
    tag = world.central.role_prefix
    assert sorted(checks) == [
        (f"alice-{tag[1:-1]}", f"{tag}team"),
        (f"bob-{tag[1:-1]}", f"{tag}ops"),
        (f"carol-{tag[1:-1]}", f"{tag}ops"),
    ]
    for check in checks.values():
        assert check.ok, check.problems
        assert any("may switch in with MFA" in c for c in check.checked), check.checked
        assert any("(not planned) is refused" in c for c in check.checked), check.checked
    alice = checks[(f"alice-{tag[1:-1]}", f"{tag}team")]
    assert alice.iam_users == ["alice-old"] and alice.access == "team"
    # Another planned person (bob) was the one refused alice's role.
    assert f"bob-{tag[1:-1]} (not planned) is refused" in alice.checked


def test_a_trust_naming_the_central_accounts_root_fails_verification(org: Org) -> None:
    world = build(org, {"team": ["alice"], "ops": ["bob"]})
    root = trust_policy([f"arn:aws:iam::{org.central}:root"], world.central)
    world.set_trust("team", root)
    checks = {k[1]: c for k, c in world.verify().items()}
    team = checks[world.roles["team"]]
    # Alice still gets in; bob, with alice's policies, would too: caught.
    assert any("may switch in" in c for c in team.checked)
    [problem] = team.problems
    assert "lets bob-" in problem and "not planned for it" in problem
    assert f"must name only {world.people['alice']}" in problem
    assert checks[world.roles["ops"]].ok


def test_the_only_person_is_tried_against_another_user_of_the_central_account(org: Org) -> None:
    # One principal in the whole plan: the other is any other IAM user of the central account
    # (the module's sandbox holds earlier tests' people too, so not necessarily erin).
    world = build(org, {"team": ["dave"]}, bystanders=("erin",))
    [check] = world.verify().values()
    assert check.ok, check.problems
    [refused] = [c for c in check.checked if "(not planned) is refused" in c]
    assert not refused.startswith("dave-")
    world.set_trust("team", trust_policy([f"arn:aws:iam::{org.central}:root"], world.central))
    [check] = world.verify().values()
    assert len(check.problems) == 1 and "not planned for it" in check.problems[0]


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
    # Frank is refused by the trust, and grace (planned for ops only) would get in.
    team, other = checks[world.roles["team"]].problems
    assert "trust policy" in team and "does not let frank-" in team and "implicitDeny" in team
    assert "lets grace-" in other
    [ops] = checks[world.roles["ops"]].problems
    assert "policies in the central account" in ops and "put-access-policy" in ops
    assert any("nobody else tried" in c for c in checks[world.roles["ops"]].checked)


def test_a_role_not_provisioned_or_gone_is_a_problem(org: Org) -> None:
    world = build(org, {"team": ["heidi"], "ops": ["ivan"]})
    team, ops = (a for a in world.plan.actions)
    world.statuses[team.id] = "failed"
    org.iam(org.member).delete_role(RoleName=world.roles["ops"])
    checks = {k[1]: c for k, c in world.verify().items()}
    assert "was not provisioned (create-member-role failed)" in checks[team.target].problems[0]
    assert "does not exist in" in checks[ops.target].problems[0]
