"""Running from a delegated administrator of Identity Center: what the management account keeps.

A delegated administrator can't manage account assignments in the organization's management
account, nor permission sets provisioned there (IAM Identity Center user guide, "Delegated
administration"). Planned from such an account, an assignment into the management account
would fail at apply; the plan skips the users it serves instead, with the reason.
"""

from __future__ import annotations

from typing import Any

from domain.plan import USER_SCOPE
from domain.records import AccountInventory, Finding

KIND = "delegated-admin-management-account"


def management_account_findings(
    assignments: list[Any],
    inventories: list[AccountInventory],
    management_account_id: str | None,
    caller_account_id: str | None,
) -> list[Finding]:
    """One user-scoped blocking finding per IAM user whose access lands in the management account.

    Nothing when the tool runs from the management account itself, or when either id is
    unknown (an inventory from before they were recorded).

    Args:
        assignments: Synthesis's assignments (``account_id``, ``permission_set_name``,
            ``reason`` such as ``"user a; group g"``).
        inventories: The plan's accounts (a group's members come from its inventory).
        management_account_id: The organization's (DescribeOrganization MasterAccountId).
        caller_account_id: The account the tool's session is in (GetCallerIdentity).
    """
    if not management_account_id or not caller_account_id:
        return []
    if management_account_id == caller_account_id:
        return []
    members: dict[str, list[str]] = {}
    for inventory in inventories:
        if inventory.account.account_id == management_account_id:
            for user in inventory.users:
                for group in user.groups:
                    members.setdefault(group, []).append(user.name)
    sets_of: dict[str, set[str]] = {}
    for assignment in assignments:
        if assignment.account_id != management_account_id:
            continue
        for reason in str(assignment.reason).split("; "):
            kind, _, name = reason.partition(" ")
            users = [name] if kind == "user" else sorted(members.get(name, []))
            for user in users:
                sets_of.setdefault(user, set()).add(assignment.permission_set_name)
    return [
        Finding(
            severity="blocking",
            kind=KIND,
            message=f"IAM user {user} in the management account {management_account_id} is "
            f"skipped: run from the management account (this run's account "
            f"{caller_account_id} is a delegated administrator, and AWS reserves assignments "
            "and permission sets in the management account to the management account)",
            account_id=management_account_id,
            subject=f"user {user}",
            details={
                "scope": USER_SCOPE,
                "permission_sets": sorted(names),
                "management_account_id": management_account_id,
                "caller_account_id": caller_account_id,
            },
        )
        for user, names in sorted(sets_of.items())
    ]
