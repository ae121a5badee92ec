"""The generated least-privilege policy covers every AWS operation the tasks modules call."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import botocore.session

from tasks.permissions import (
    MEMBER_ACCOUNT_SERVICES,
    NOT_GUARDED_BY_USER_TAG,
    USER_RESOURCE_WRITES,
    declared_permissions,
    least_privilege_policies,
    restore_only_writes,
    session_policy,
)

SERVICES = {
    "iam": "iam",
    "sts": "sts",
    "organizations": "organizations",
    "sso-admin": "sso",
    "identitystore": "identitystore",
    # tasks.aws_config_scan (key scan of member-account configuration)
    "lambda": "lambda",
    "ecs": "ecs",
    "ec2": "ec2",
    "ssm": "ssm",
    "cloudformation": "cloudformation",
    "codebuild": "codebuild",
    # Read before a user is deleted: CloudTrail for use, resource policies for references.
    "cloudtrail": "cloudtrail",
    "s3": "s3",
    "kms": "kms",
    "sqs": "sqs",
    "sns": "sns",
    "secretsmanager": "secretsmanager",
    "ecr": "ecr",
}
# Operations whose IAM action is named differently (Service Authorization Reference).
ACTION_OF_OPERATION = {"s3:ListBuckets": "s3:ListAllMyBuckets"}
TASKS = Path(__file__).resolve().parents[2] / "tasks"


def operations_by_method() -> dict[str, set[str]]:
    """{snake_case method: {"iam:ListUsers", "identitystore:ListUsers"}, ...}."""
    core = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        for operation in core.get_service_model(service).operation_names:
            snake = re.sub(r"(?<!^)(?=[A-Z][a-z])|(?<=[a-z0-9])(?=[A-Z])", "_", operation).lower()
            action = f"{prefix}:{operation}"
            found.setdefault(snake, set()).add(ACTION_OF_OPERATION.get(action, action))
    return found


def called_operations(path: Path, by_method: dict[str, set[str]]) -> dict[str, set[str]]:
    """Method calls (and paginator names) in a module that are AWS operations."""
    calls: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        name = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
                name = node.args[0].value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value  # paginated operations passed by name to a helper
        if name in by_method:
            calls[name] = by_method[name]
    return calls


# Adapters of tasks/ that call no AWS API, whose method names only look like AWS operations.
NOT_AWS = {"tasks.mail"}  # SMTP: smtplib's send_message, not sqs:SendMessage


def test_every_called_operation_is_declared():
    by_method = operations_by_method()
    declared = declared_permissions()
    missing = []
    for path in sorted(TASKS.glob("*.py")):
        module = f"tasks.{path.stem}"
        if module in NOT_AWS:
            continue
        actions = set()
        for kind in ("read", "write"):
            actions.update(declared.get(module, {}).get(kind, ()))
        for method, candidates in called_operations(path, by_method).items():
            if method in ("get_caller_identity", "assume_role"):
                continue  # the session factory's own calls, always in the policy
            if not candidates & actions:
                missing.append(f"{module}: {method} -> one of {sorted(candidates)}")
    assert missing == []


def test_policies_split_management_and_member_actions():
    policies = least_privilege_policies()
    member = {a for s in policies["member"]["Statement"] for a in s["Action"]}
    management = {a for s in policies["management"]["Statement"] for a in s["Action"]}
    assert "iam:GetAccountAuthorizationDetails" in member
    assert "organizations:ListAccountsForParent" in management
    assert "sts:AssumeRole" in management
    assert "lambda:ListFunctions" in member
    assert not {a for a in member if a.split(":")[0] not in MEMBER_ACCOUNT_SERVICES}
    assert not {a for a in management if a.split(":")[0] in MEMBER_ACCOUNT_SERVICES}
    assert {"cloudtrail:LookupEvents", "s3:GetBucketPolicy", "iam:UpdateAccessKey"} <= member
    for action in member | management:
        assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action


def allowed(document: dict) -> set[str]:
    return {a for s in document["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}


def test_the_member_policy_holds_none_of_restores_writes():
    policies = least_privilege_policies()
    restore_only = restore_only_writes()
    assert {
        "iam:CreateUser",
        "iam:AttachUserPolicy",
        "iam:PutUserPermissionsBoundary",
        "iam:UploadSSHPublicKey",
        "iam:UploadSigningCertificate",
    } <= restore_only
    assert not allowed(policies["member"]) & restore_only
    assert restore_only <= allowed(policies["restore"])
    # The restore policy is restore's own declarations and nothing else.
    restore = declared_permissions()["tasks.user_restore"]
    assert allowed(policies["restore"]) == set(restore["read"]) | set(restore["write"])
    # Disabling still needs what it shares with restore (the quarantine policy), and the
    # central-roles target adds people to its access groups in the central account.
    assert "iam:PutUserPolicy" in allowed(policies["member"])
    assert {"iam:AddUserToGroup", "iam:CreateGroup", "iam:CreateRole"} <= allowed(
        policies["member"]
    )


def test_every_iam_write_is_classified_for_the_protected_user_deny():
    declared = {
        a for d in declared_permissions().values() for a in d["write"] if a.startswith("iam:")
    }
    assert not USER_RESOURCE_WRITES & set(NOT_GUARDED_BY_USER_TAG)
    assert declared == USER_RESOURCE_WRITES | set(NOT_GUARDED_BY_USER_TAG)


def test_member_policies_deny_every_user_write_on_protected_users():
    policies = least_privilege_policies(protected_tag="team:keep")
    for which in ("member", "restore"):
        document = policies[which]
        (deny,) = [s for s in document["Statement"] if s["Effect"] == "Deny"]
        assert deny["Condition"] == {
            "StringEqualsIgnoreCase": {"iam:ResourceTag/team:keep": "true"}
        }
        writes = {a for s in document["Statement"] if s.get("Sid") == "Change" for a in s["Action"]}
        assert set(deny["Action"]) == writes - set(NOT_GUARDED_BY_USER_TAG), which
    assert {"iam:DeleteUser", "iam:UpdateAccessKey", "iam:PutUserPolicy"} <= set(
        next(s for s in policies["member"]["Statement"] if s["Effect"] == "Deny")["Action"]
    )


def test_the_management_policy_may_assume_only_the_member_roles():
    for roles, expected in (
        ((), ["arn:aws:iam::*:role/OrganizationAccountAccessRole"]),
        (("Audit", None), ["arn:aws:iam::*:role/Audit"]),
        (("Audit", "Restorer"), ["arn:aws:iam::*:role/Audit", "arn:aws:iam::*:role/Restorer"]),
    ):
        statements = least_privilege_policies(*roles)["management"]["Statement"]
        assuming = [s for s in statements if "sts:AssumeRole" in s["Action"]]
        assert len(assuming) == 1 and assuming[0]["Action"] == ["sts:AssumeRole"]
        assert assuming[0]["Resource"] == expected
        for statement in statements:
            if statement["Resource"] == "*":
                assert "sts:AssumeRole" not in statement["Action"]


def test_session_policies_fit_assume_roles_limit_and_deny_what_they_must():
    for restore in (False, True):
        text = session_policy(restore, "iamc:protected")
        # AssumeRole: the session policy's plain text may not exceed 2,048 characters.
        assert len(text) <= 2048
        statements = {s["Sid"]: s for s in json.loads(text)["Statement"]}
        assert statements["WithinTheRole"] == {
            "Sid": "WithinTheRole",
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*",
        }
        protected = statements["NeverTouchProtectedUsers"]
        assert set(protected["Action"]) >= {"iam:DeleteUser", "iam:AttachUserPolicy"}
        assert ("NoRestoreWrites" in statements) is not restore
    routine = json.loads(session_policy(False, "iamc:protected"))["Statement"]
    assert set(next(s for s in routine if s["Sid"] == "NoRestoreWrites")["Action"]) == (
        restore_only_writes()
    )
