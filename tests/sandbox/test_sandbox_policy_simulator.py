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
