"""The tool's own least-privilege IAM policy, generated from what each tasks module declares.

Every module in ``tasks/`` that calls AWS declares the actions it needs beside the code:
``READ_PERMISSIONS`` for reads and ``PERMISSIONS`` for mutations (cloud-custodian's
``permissions``). This module gathers them; a test checks that no module calls an operation it
did not declare.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import tasks

# Where each action runs: member-account actions go in the member role's policy; the rest run
# with the management account's credentials.
# Read in each member account: workload configuration for the key scan (tasks.aws_config_scan);
# CloudTrail (use since disabling) and the resource policies that could name a user (retiring).
MEMBER_ACCOUNT_SERVICES = frozenset(
    {
        "iam",
        "lambda",
        "ecs",
        "ec2",
        "ssm",
        "cloudformation",
        "codebuild",
        "cloudtrail",
        "s3",
        "kms",
        "sqs",
        "sns",
        "secretsmanager",
        "ecr",
    }
)


def declared_permissions() -> dict[str, dict[str, tuple[str, ...]]]:
    """{module: {"read": actions, "write": actions}} for every module of the tasks package."""
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    for module_info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{module_info.name}")
        read = tuple(getattr(module, "READ_PERMISSIONS", ()))
        write = tuple(getattr(module, "PERMISSIONS", ()))
        if read or write:
            found[module.__name__] = {"read": read, "write": write}
    return found


def least_privilege_policies() -> dict[str, dict[str, Any]]:
    """Two IAM policy documents: one for the management account, one for the member role."""
    read: set[str] = set()
    write: set[str] = set()
    for declared in declared_permissions().values():
        read.update(declared["read"])
        write.update(declared["write"])
    # sts:AssumeRole into the member role is what the session factory itself does.
    read.add("sts:AssumeRole")
    read.add("sts:GetCallerIdentity")

    def document(actions_read: set[str], actions_write: set[str]) -> dict[str, Any]:
        statements = []
        if actions_read:
            statements.append(
                {"Sid": "Read", "Effect": "Allow", "Action": sorted(actions_read), "Resource": "*"}
            )
        if actions_write:
            statements.append(
                {
                    "Sid": "Change",
                    "Effect": "Allow",
                    "Action": sorted(actions_write),
                    "Resource": "*",
                }
            )
        return {"Version": "2012-10-17", "Statement": statements}

    def member(action: str) -> bool:
        return action.split(":", 1)[0] in MEMBER_ACCOUNT_SERVICES

    return {
        "management": document(
            {a for a in read if not member(a)}, {a for a in write if not member(a)}
        ),
        "member": document({a for a in read if member(a)}, {a for a in write if member(a)}),
    }
