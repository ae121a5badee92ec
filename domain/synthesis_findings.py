"""The findings synthesis raises about one account's holders: widened access, boundary
conflicts, users with nothing to assign."""

from __future__ import annotations

from typing import Any

from domain.access import boundary_label
from domain.plan import USER_SCOPE
from domain.records import Finding, IdentityGroup


def access_widened(
    account_id: str, group_name: str, label: str, idp_group: IdentityGroup, gaining: list[str]
) -> Finding:
    return Finding(
        severity="warning",
        kind="access-widened",
        message=f"Assigning IAM group {group_name}'s access in {account_id} to "
        f"identity group {label or idp_group.group_id} widens access: "
        f"{len(gaining)} identity(ies) gain it without being mapped members of "
        f"{group_name} in that account",
        account_id=account_id,
        subject=group_name,
        details={
            "identity_group_id": idp_group.group_id,
            "gaining_count": len(gaining),
            "gaining_identity_ids": gaining,
        },
    )


def boundary_conflict(
    account_id: str, user_name: str, own: str, boundary: dict[str, Any]
) -> Finding:
    return Finding(
        severity="blocking",
        kind="boundary-conflict",
        message=f"IAM user {user_name} in {account_id} has permissions boundary {own}, but "
        f"[permission_sets] boundary is {boundary_label(boundary)}: a permission set holds one "
        "boundary and which of the two is stricter can't be known, so this user is not "
        "migrated; make the spec's boundary the user's (or remove the user's), then plan again",
        account_id=account_id,
        subject=f"user {user_name}",
        details={"scope": USER_SCOPE, "user_boundary": own, "spec_boundary": boundary},
    )


def no_access(account_id: str, user_name: str) -> Finding:
    return Finding(
        severity="info",
        kind="no-effective-access",
        message=f"IAM user {user_name} in {account_id} has no policies: no assignment needed",
        account_id=account_id,
        subject=user_name,
    )
