"""The generated least-privilege policy covers every AWS operation the tasks modules call."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import botocore.session

from tasks.permissions import (
    MEMBER_ACCOUNT_SERVICES,
    declared_permissions,
    least_privilege_policies,
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


def test_every_called_operation_is_declared():
    by_method = operations_by_method()
    declared = declared_permissions()
    missing = []
    for path in sorted(TASKS.glob("*.py")):
        module = f"tasks.{path.stem}"
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
