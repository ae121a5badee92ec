"""The tool's own least-privilege IAM policies, generated from what each tasks module declares.

Every module in ``tasks/`` that calls AWS declares the actions it needs beside the code:
``READ_PERMISSIONS`` for reads and ``PERMISSIONS`` for mutations (cloud-custodian's
``permissions``). A module whose writes only ``iamc restore`` makes says so with
``RUNS_AS = RESTORE``: they go in the restore role's policy, never in the routine member
role's. This module gathers the declarations; a test checks that no module calls an operation
it did not declare, and another that each command's calls fit the policy of the role it uses.
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
from typing import Any

import tasks

DEFAULT_MEMBER_ROLE = "OrganizationAccountAccessRole"
DEFAULT_PROTECTED_TAG = "iamc:protected"

# Which member-account role a module's permissions belong to: ROUTINE is the role every command
# but ``iamc restore`` assumes; RESTORE is the role ``iamc restore`` assumes.
ROUTINE = "routine"
RESTORE = "restore"

# Where each action runs: member-account actions go in the member roles' policies; the rest run
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

# The IAM writes the tool declares whose resource is the user itself, so that
# ``iam:ResourceTag/<key>`` is the user's tag: the Service Authorization Reference for IAM
# (docs.aws.amazon.com/service-authorization/latest/reference/
# list_awsidentityandaccessmanagementiam.html) lists resource type ``user*`` for each, and the
# ``user`` resource type carries ``iam:ResourceTag/${TagKey}``.
USER_RESOURCE_WRITES = frozenset(
    {
        "iam:AttachUserPolicy",
        "iam:DeactivateMFADevice",
        "iam:DeleteAccessKey",
        "iam:DeleteLoginProfile",
        "iam:DeleteSSHPublicKey",
        "iam:DeleteServiceSpecificCredential",
        "iam:DeleteSigningCertificate",
        "iam:DeleteUser",
        "iam:DeleteUserPermissionsBoundary",
        "iam:DeleteUserPolicy",
        "iam:DetachUserPolicy",
        "iam:PutUserPermissionsBoundary",
        "iam:PutUserPolicy",
        "iam:TagUser",
        "iam:UpdateAccessKey",
        "iam:UpdateSSHPublicKey",
        "iam:UpdateServiceSpecificCredential",
        "iam:UpdateSigningCertificate",
        "iam:UploadSSHPublicKey",
        "iam:UploadSigningCertificate",
    }
)
# The IAM writes the tool declares that a user's tag can't guard, and why (same reference):
# the protected-user deny can't name them, so the code's own protected-user check is all.
NOT_GUARDED_BY_USER_TAG = {
    "iam:AddUserToGroup": "its resource is the group (resource type group*)",
    "iam:RemoveUserFromGroup": "its resource is the group (resource type group*)",
    "iam:DeleteVirtualMFADevice": "its resource is the MFA device (resource type mfa*)",
    "iam:CreateUser": "the user has no tags before it exists",
    # The replace stage's writes act on roles, instance profiles and OIDC providers it
    # creates (tasks.iam_roles), never on a user.
    **{
        action: "its resource is a role (resource type role*)"
        for action in (
            "iam:CreateRole",
            "iam:TagRole",
            "iam:PutRolePermissionsBoundary",
            "iam:DeleteRole",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            # The central-roles target's member roles (tasks.member_roles), brought to a
            # plan and put back by a rollback.
            "iam:UntagRole",
            "iam:UpdateRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:DeleteRolePermissionsBoundary",
        )
    },
    # The central-roles target's access groups in the central account (tasks.central_access).
    **{
        action: "its resource is a group (resource type group*)"
        for action in (
            "iam:CreateGroup",
            "iam:DeleteGroup",
            "iam:PutGroupPolicy",
            "iam:DeleteGroupPolicy",
        )
    },
    **{
        action: "its resource is an instance profile (resource type instance-profile*)"
        for action in (
            "iam:CreateInstanceProfile",
            "iam:TagInstanceProfile",
            "iam:AddRoleToInstanceProfile",
            "iam:RemoveRoleFromInstanceProfile",
            "iam:DeleteInstanceProfile",
        )
    },
    **{
        action: "its resource is an OIDC provider (resource type oidc-provider*)"
        for action in ("iam:CreateOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider")
    },
}


def declared_permissions() -> dict[str, dict[str, Any]]:
    """{module: {"read": actions, "write": actions, "role": ROUTINE | RESTORE}} per tasks module."""
    found: dict[str, dict[str, Any]] = {}
    for module_info in pkgutil.iter_modules(tasks.__path__):
        module = importlib.import_module(f"tasks.{module_info.name}")
        read = tuple(getattr(module, "READ_PERMISSIONS", ()))
        write = tuple(getattr(module, "PERMISSIONS", ()))
        if read or write:
            role = getattr(module, "RUNS_AS", ROUTINE)
            found[module.__name__] = {"read": read, "write": write, "role": role}
    return found


def _member(action: str) -> bool:
    return action.split(":", 1)[0] in MEMBER_ACCOUNT_SERVICES


@functools.cache
def _gathered() -> dict[str, frozenset[str]]:
    """Actions by where and as what they run: management/routine/restore, read/write."""
    sets: dict[str, set[str]] = {
        key: set()
        for key in (
            "management_read",
            "management_write",
            "routine_read",
            "routine_write",
            "restore_read",
            "restore_write",
        )
    }
    for declared in declared_permissions().values():
        role = declared["role"]
        for kind in ("read", "write"):
            for action in declared[kind]:
                where = role if _member(action) else "management"
                sets[f"{where}_{kind}"].add(action)
    # The session factory's own call; sts:AssumeRole has a statement of its own (role ARNs).
    sets["management_read"].add("sts:GetCallerIdentity")
    return {key: frozenset(value) for key, value in sets.items()}


def restore_only_writes() -> frozenset[str]:
    """The writes only ``iamc restore`` makes: never in the routine member role's policy."""
    gathered = _gathered()
    return gathered["restore_write"] - gathered["routine_write"]


def _protected_users_deny(actions: set[str] | frozenset[str], protected_tag: str) -> dict[str, Any]:
    # StringEqualsIgnoreCase: iamc treats any casing of "true" as protected (tasks.iam_users).
    return {
        "Sid": "NeverTouchProtectedUsers",
        "Effect": "Deny",
        "Action": sorted(actions),
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {f"iam:ResourceTag/{protected_tag}": "true"}},
    }


def _document(
    read: frozenset[str], write: frozenset[str], protected_tag: str | None = None
) -> dict[str, Any]:
    statements: list[dict[str, Any]] = []
    if read:
        statements.append(
            {"Sid": "Read", "Effect": "Allow", "Action": sorted(read), "Resource": "*"}
        )
    if write:
        statements.append(
            {"Sid": "Change", "Effect": "Allow", "Action": sorted(write), "Resource": "*"}
        )
    guarded = write & USER_RESOURCE_WRITES
    if protected_tag is not None and guarded:
        statements.append(_protected_users_deny(guarded, protected_tag))
    return {"Version": "2012-10-17", "Statement": statements}


def role_arn_pattern(role_name: str) -> str:
    """The role of that name in any account (member roles have no path: domain.spec)."""
    return f"arn:aws:iam::*:role/{role_name}"


def least_privilege_policies(
    member_role: str = DEFAULT_MEMBER_ROLE,
    restore_role: str | None = None,
    protected_tag: str = DEFAULT_PROTECTED_TAG,
) -> dict[str, dict[str, Any]]:
    """Three IAM policy documents: the management account's, the routine member role's and the
    restore role's.

    Args:
        member_role: The role every command but ``iamc restore`` assumes in member accounts.
        restore_role: The role ``iamc restore`` assumes (None: ``member_role``).
        protected_tag: The tag key that marks a user iamc must never touch.

    Returns:
        ``{"management": ..., "member": ..., "restore": ...}``. The member policy holds none
        of restore's own writes; both member-account policies deny every write on a user
        tagged ``protected_tag=true``; the management policy may assume only the two roles.
    """
    gathered = _gathered()
    roles = sorted({member_role, restore_role or member_role})
    management = _document(gathered["management_read"], gathered["management_write"])
    management["Statement"].append(
        {
            "Sid": "AssumeMemberRoles",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole"],
            "Resource": [role_arn_pattern(role) for role in roles],
        }
    )
    return {
        "management": management,
        "member": _document(gathered["routine_read"], gathered["routine_write"], protected_tag),
        "restore": _document(gathered["restore_read"], gathered["restore_write"], protected_tag),
    }


# Writes that re-point who may use a role or group: a routine session makes them only on what
# the migration creates, under its path, never on a role it was given (such as
# OrganizationAccountAccessRole, whose trust is how iamc reaches the account) or a group of
# the account's own. Restore's sessions don't make them.
PATH_SCOPED_ROLE_WRITES = (
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UntagRole",
    "iam:DeleteRolePermissionsBoundary",
)
PATH_SCOPED_GROUP_WRITES = (
    "iam:AddUserToGroup",
    "iam:CreateGroup",
    "iam:DeleteGroup",
    "iam:PutGroupPolicy",
    "iam:DeleteGroupPolicy",
)
DEFAULT_ROLE_PATH = "/iamc/"


def _outside_path_deny(role_path: str) -> dict[str, Any]:
    return {
        "Sid": "OnlyWhatIamcCreates",
        "Effect": "Deny",
        "Action": [*PATH_SCOPED_ROLE_WRITES, *PATH_SCOPED_GROUP_WRITES],
        "NotResource": [f"arn:*:iam::*:role{role_path}*", f"arn:*:iam::*:group{role_path}*"],
    }


@functools.cache
def session_policy(
    restore: bool, protected_tag: str = DEFAULT_PROTECTED_TAG, role_path: str = DEFAULT_ROLE_PATH
) -> str:
    """The AssumeRole session policy (``Policy``) every member session carries, as JSON.

    A session's permissions are the intersection of the role's policies and the session
    policy (STS API reference, AssumeRole, ``Policy``), so this allows everything and then
    denies: in every session, any write on a user tagged ``protected_tag=true``; in a routine
    session also restore's own writes. It holds whatever role the operator gave iamc
    (``OrganizationAccountAccessRole`` has AdministratorAccess), and when the routine and
    restore roles are one role it is what keeps a routine run from restore's writes.

    Args:
        restore: For ``iamc restore``'s sessions (only the protected-user deny).
        protected_tag: The tag key that marks a user iamc must never touch.
        role_path: The path of the roles and groups the migration creates (``[central]
            role_path``; ``/iamc/``): a routine session re-points none outside it.
    """
    gathered = _gathered()
    guarded = (gathered["routine_write"] | gathered["restore_write"]) & USER_RESOURCE_WRITES
    statements: list[dict[str, Any]] = [
        {"Sid": "WithinTheRole", "Effect": "Allow", "Action": "*", "Resource": "*"},
        _protected_users_deny(guarded, protected_tag),
    ]
    if not restore:
        statements.append(
            {
                "Sid": "NoRestoreWrites",
                "Effect": "Deny",
                "Action": sorted(restore_only_writes()),
                "Resource": "*",
            }
        )
        statements.append(_outside_path_deny(role_path))
    # Compact: AssumeRole allows at most 2,048 characters of session policy plain text.
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
