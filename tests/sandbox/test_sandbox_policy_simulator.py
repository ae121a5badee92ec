"""SimulatePrincipalPolicy: the sandbox evaluates a role's inline, managed and boundary policies."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def role(iam: Any, inline: str | None = None, managed: str | None = None, **extra: Any) -> str:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST), **extra)[
        "Role"
    ]["Arn"]
    if inline:
        iam.put_role_policy(RoleName=name, PolicyName="inline", PolicyDocument=inline)
    if managed:
        policy = iam.create_policy(PolicyName=f"{name}-m", PolicyDocument=managed)["Policy"]
        iam.attach_role_policy(RoleName=name, PolicyArn=policy["Arn"])
    return arn


def decisions(iam: Any, arn: str, *actions: str, **extra: Any) -> dict[str, str]:
    found = {}
    pages = iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=arn, ActionNames=list(actions), **extra
    )
    for page in pages:
        for result in page["EvaluationResults"]:
            found[result["EvalActionName"]] = result["EvalDecision"]
    return found


def test_allow_by_wildcard_deny_wins_and_no_allow_is_implicit(client) -> None:
    iam = client("iam")
    arn = role(
        iam,
        inline=doc(
            {"Effect": "Allow", "Action": ["s3:Get*", "ec2:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "ec2:TerminateInstances", "Resource": "*"},
        ),
        managed=doc({"Effect": "Allow", "Action": "dynamodb:Query", "Resource": "*"}),
    )
    assert decisions(
        iam,
        arn,
        "s3:GetObject",
        "s3:PutObject",
        "EC2:DescribeInstances",
        "ec2:TerminateInstances",
        "dynamodb:Query",
    ) == {
        "s3:GetObject": "allowed",
        "s3:PutObject": "implicitDeny",
        "EC2:DescribeInstances": "allowed",
        "ec2:TerminateInstances": "explicitDeny",
        "dynamodb:Query": "allowed",
    }


def test_notaction_and_resource_scoped_statements(client) -> None:
    iam = client("iam")
    arn = role(
        iam,
        inline=doc(
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "arn:aws:iam::*:role/app"},
        ),
    )
    assert decisions(iam, arn, "sqs:SendMessage", "iam:GetRole", "iam:ListRoles") == {
        "sqs:SendMessage": "allowed",
        # Resource defaults to "*", which a resource-scoped statement does not match.
        "iam:GetRole": "implicitDeny",
        "iam:ListRoles": "implicitDeny",
    }
    scoped = decisions(iam, arn, "iam:GetRole", ResourceArns=["arn:aws:iam::123456789012:role/app"])
    assert scoped == {"iam:GetRole": "allowed"}


def test_a_permissions_boundary_limits_what_the_role_allows(client) -> None:
    iam = client("iam")
    boundary = iam.create_policy(
        PolicyName=f"b-{uuid.uuid4().hex[:8]}",
        PolicyDocument=doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
    )["Policy"]["Arn"]
    arn = role(
        iam,
        inline=doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
        PermissionsBoundary=boundary,
    )
    assert decisions(iam, arn, "s3:ListBucket", "ec2:RunInstances") == {
        "s3:ListBucket": "allowed",
        "ec2:RunInstances": "implicitDeny",
    }


def test_pages_and_refuses_an_unknown_role(client) -> None:
    iam = client("iam")
    arn = role(iam, inline=doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}))
    actions = [f"s3:Action{i}" for i in range(7)]
    first = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=actions, MaxItems=3)
    assert first["IsTruncated"] and len(first["EvaluationResults"]) == 3
    assert len(decisions(iam, arn, *actions, PaginationConfig={"PageSize": 3})) == 7
    with pytest.raises(ClientError) as err:
        iam.simulate_principal_policy(
            PolicySourceArn="arn:aws:iam::123456789012:role/nobody", ActionNames=["s3:GetObject"]
        )
    assert err.value.response["Error"]["Code"] == "NoSuchEntity"


def test_an_unknown_condition_operator_applies_a_deny_never_an_allow(client) -> None:
    iam = client("iam")
    unknown = {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}
    arn = role(
        iam,
        inline=doc(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*", "Condition": unknown},
            {"Effect": "Allow", "Action": "sqs:*", "Resource": "*", "Condition": unknown},
        ),
    )
    assert decisions(iam, arn, "s3:DeleteBucket", "s3:GetObject", "sqs:SendMessage") == {
        "s3:DeleteBucket": "explicitDeny",  # can't be evaluated: the Deny is taken to apply
        "s3:GetObject": "allowed",
        "sqs:SendMessage": "implicitDeny",  # can't be evaluated: the Allow is not
    }


def test_null_checks_whether_a_context_key_is_present(client) -> None:
    iam = client("iam")
    absent = {"Null": {"aws:SourceIdentity": "true"}}
    present = {"Null": {"aws:SourceIdentity": "false"}}
    arn = role(
        iam,
        inline=doc(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": absent},
            {"Effect": "Allow", "Action": "sqs:*", "Resource": "*", "Condition": present},
        ),
    )
    assert decisions(iam, arn, "s3:GetObject", "sqs:SendMessage") == {
        "s3:GetObject": "allowed",
        "sqs:SendMessage": "implicitDeny",
    }
    entry = {
        "ContextKeyName": "aws:SourceIdentity",
        "ContextKeyValues": ["x"],
        "ContextKeyType": "string",
    }
    assert decisions(iam, arn, "s3:GetObject", "sqs:SendMessage", ContextEntries=[entry]) == {
        "s3:GetObject": "implicitDeny",
        "sqs:SendMessage": "allowed",
    }


class _Check:
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.problems: list[str] = []


def _verify_use(iam: Any, arn: str, inline: str, usage: dict[str, Any]) -> list[str]:
    """tasks.verify_use's check of one trimmed person against one provisioned role."""
    from types import SimpleNamespace

    from domain.usage import UsageRead, UserUsage
    from tasks.verify_use import check_used_access

    account_id = arn.split(":")[4]
    live = SimpleNamespace(arn=arn, inline_document=json.loads(inline), managed_policy_arns=set())
    read = UsageRead(
        1,
        1,
        90,
        "2026-12-01T00:00:00Z",
        {(account_id, "jane"): UserUsage(account_id, "jane", **usage)},
    )
    check = _Check(account_id)
    check_used_access(check, ["jane"], read, {"ps": live}, None, iam)
    return check.problems


def test_verify_counts_a_boundary_denial_as_lost_though_the_role_names_the_action(client) -> None:
    from tasks.policy_simulator import BOUNDARY_DENY, simulate_actions

    iam = client("iam")
    boundary = iam.create_policy(
        PolicyName=f"b-{uuid.uuid4().hex[:8]}",
        PolicyDocument=doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
    )["Policy"]["Arn"]
    # Resource-scoped: the simulator's Resource "*" doesn't match it (implicitDeny), and the
    # action is named, which alone would count as kept.
    inline = doc(
        {
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "s3:GetObject"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
        }
    )
    arn = role(iam, inline=inline, PermissionsBoundary=boundary)
    result = iam.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["ec2:RunInstances"])
    [found] = result["EvaluationResults"]
    assert found["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    assert simulate_actions(iam, arn, ["ec2:RunInstances", "s3:GetObject"]) == {
        "ec2:RunInstances": BOUNDARY_DENY,
        "s3:GetObject": "implicitDeny",
    }
    when = "2026-11-30T00:00:00Z"
    used = {
        "actions": {"ec2:RunInstances": when, "s3:GetObject": when, "sts:GetCallerIdentity": when}
    }
    problems = _verify_use(iam, arn, inline, used)
    # s3:GetObject: named and inside the boundary (kept); sts:GetCallerIdentity needs no
    # permission; ec2:RunInstances: the boundary takes it away.
    assert len(problems) == 1 and "ec2:RunInstances" in problems[0], problems


def test_verify_counts_a_service_a_deny_takes_away_as_lost(client) -> None:
    iam = client("iam")
    inline = doc(
        {"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"},
        {"Effect": "Deny", "Action": "sqs:*", "Resource": "*"},
    )
    arn = role(iam, inline=inline)
    when = "2026-11-30T00:00:00Z"
    problems = _verify_use(iam, arn, inline, {"services": {"s3": when, "sqs": when}})
    assert len(problems) == 1 and "service sqs" in problems[0], problems


# -- a role's trust policy as the ResourcePolicy (central roles' verify) ------------------------

MEMBER_ROLE = "arn:aws:iam::210987654321:role/iamc/iamc-team"
MFA = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
WITH_MFA = [
    {
        "ContextKeyName": "aws:MultiFactorAuthPresent",
        "ContextKeyValues": ["true"],
        "ContextKeyType": "boolean",
    }
]


def trust(*principals: str, condition: dict[str, Any] | None = MFA, deny: str | None = None) -> str:
    allow: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": list(principals)},
        "Action": "sts:AssumeRole",
    }
    if condition:
        allow["Condition"] = condition
    statements = [allow]
    if deny:
        statements.append({"Effect": "Deny", "Principal": {"AWS": deny}, "Action": "sts:*"})
    return doc(*statements)


@pytest.fixture
def people(client) -> dict[str, str]:
    """Two users of one account; only the first is in the group allowed to assume the role."""
    iam = client("iam")
    tag = uuid.uuid4().hex[:8]
    group = f"team-{tag}"
    iam.create_group(GroupName=group)
    iam.put_group_policy(
        GroupName=group,
        PolicyName="assume",
        PolicyDocument=doc(
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": MEMBER_ROLE,
                "Condition": MFA,
            }
        ),
    )
    found = {}
    for name in ("alice", "bob"):
        found[name] = iam.create_user(UserName=f"{name}-{tag}", Path="/people/")["User"]["Arn"]
    iam.add_user_to_group(GroupName=group, UserName=f"alice-{tag}")
    return found


def assume(iam: Any, source: str, policy: str, caller: str | None = None, **extra: Any) -> str:
    if caller:
        extra["CallerArn"] = caller
    [result] = iam.simulate_principal_policy(
        PolicySourceArn=source,
        ActionNames=["sts:AssumeRole"],
        ResourceArns=[MEMBER_ROLE],
        ResourcePolicy=policy,
        ResourceOwner="arn:aws:iam::210987654321:root",
        **extra,
    )["EvaluationResults"]
    return result["EvalDecision"]


def test_assume_role_needs_the_identity_policy_and_the_trust_policy_with_its_context(
    client, people
) -> None:
    iam = client("iam")
    alice, bob = people["alice"], people["bob"]
    named = trust(alice)
    assert assume(iam, alice, named, alice, ContextEntries=WITH_MFA) == "allowed"
    # CallerArn defaults to the user of PolicySourceArn.
    assert assume(iam, alice, named, ContextEntries=WITH_MFA) == "allowed"
    # No MFA in the context: both the group's policy and the trust's condition fail.
    assert assume(iam, alice, named, alice) == "implicitDeny"
    # Bob with alice's policies: the trust does not name him.
    assert assume(iam, alice, named, bob, ContextEntries=WITH_MFA) == "implicitDeny"
    # Bob's own policies allow nothing, whatever the trust says.
    assert assume(iam, bob, trust(bob), bob, ContextEntries=WITH_MFA) == "implicitDeny"
    # A trust naming the account's root lets anyone of it in whose policies allow it.
    root = trust("arn:aws:iam::123456789012:root", condition=None)
    assert assume(iam, alice, root, bob, ContextEntries=WITH_MFA) == "allowed"
    # A trust from another account's principal only: not alice.
    other = trust("arn:aws:iam::111122223333:user/alice")
    assert assume(iam, alice, other, alice, ContextEntries=WITH_MFA) == "implicitDeny"
    # An explicit Deny of the trust policy wins.
    denied = trust(alice, deny=alice)
    assert assume(iam, alice, denied, alice, ContextEntries=WITH_MFA) == "explicitDeny"
    # Without a ResourcePolicy only the identity side is simulated, as before.
    [only] = iam.simulate_principal_policy(
        PolicySourceArn=alice,
        ActionNames=["sts:AssumeRole"],
        ResourceArns=[MEMBER_ROLE],
        ContextEntries=WITH_MFA,
    )["EvaluationResults"]
    assert only["EvalDecision"] == "allowed"


def test_what_the_sandbox_cannot_evaluate_with_a_resource_policy_is_refused(client, people) -> None:
    iam = client("iam")
    alice = people["alice"]
    arn = role(iam, inline=doc({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}))
    refusals = [
        # CallerArn is only ever an IAM user (IAM API reference, SimulatePrincipalPolicy).
        dict(PolicySourceArn=alice, CallerArn=arn, ResourceArns=[MEMBER_ROLE]),
        # A role's policies with a resource policy need a caller.
        dict(PolicySourceArn=arn, ResourceArns=[MEMBER_ROLE], ResourcePolicy=trust(alice)),
        # Not a trust policy's action and resource.
        dict(
            PolicySourceArn=alice,
            ResourceArns=["arn:aws:s3:::bucket/key"],
            ResourcePolicy=trust(alice),
        ),
        dict(PolicySourceArn=alice, ResourceArns=[MEMBER_ROLE], ResourcePolicy="{not json"),
    ]
    for params in refusals:
        with pytest.raises(ClientError) as err:
            iam.simulate_principal_policy(ActionNames=["sts:AssumeRole"], **params)
        assert err.value.response["Error"]["Code"] == "InvalidInput", params
