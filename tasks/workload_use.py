"""A workload user's keys and its replacement role, read live: what the cut-over check decides on.

``GetAccessKeyLastUsed`` per key (every key of the user, active or not) and ``GetRole``'s
``RoleLastUsed`` (IAM tracks a role's last use for the trailing 400 days; IAM User Guide,
"Viewing role access"). Read only.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from domain.workload_cutover import KeyLastUse, RoleUse
from domain.workloads import ROLE_PATH
from tasks.aws import error_code

READ_PERMISSIONS = ("iam:ListAccessKeys", "iam:GetAccessKeyLastUsed", "iam:GetRole")


def key_last_uses(iam: Any, user_name: str) -> list[KeyLastUse] | None:
    """Every access key of the user with its last use; None when the user is gone."""
    try:
        listed = [
            key
            for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name)
            for key in page.get("AccessKeyMetadata", [])
        ]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    found = []
    for key in listed:
        used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get(
            "AccessKeyLastUsed", {}
        )
        found.append(
            KeyLastUse(
                access_key_id=key["AccessKeyId"],
                created=key.get("CreateDate"),
                last_used=used.get("LastUsedDate"),
                service=used.get("ServiceName"),
                region=used.get("Region"),
                status=key.get("Status", "Active"),
            )
        )
    return found


def role_use(iam: Any, role_name: str) -> RoleUse:
    """The replacement role's last use as ``GetRole`` reports it (``exists`` False: no such
    role, or one of that name outside ``/iamc/``, which iamc did not make)."""
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return RoleUse(role_name, exists=False)
        raise
    if role.get("Path") != ROLE_PATH:
        return RoleUse(role_name, exists=False)
    last = role.get("RoleLastUsed") or {}
    return RoleUse(
        role_name, exists=True, last_used=last.get("LastUsedDate"), region=last.get("Region")
    )
