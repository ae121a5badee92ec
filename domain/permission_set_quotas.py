"""Identity Center and IAM quotas a synthesized permission set must fit, checked before planning.

A permission set is provisioned as an ``AWSReservedSSO_*`` role in each account, so the role's
IAM limits are the ones that bite at provisioning time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from domain.access import PermissionSetDefinition, SynthesisResult
from domain.plan import PlanAction
from domain.records import AccountInventory, Finding

# IAM Identity Center quotas (userguide/limits) and IAM quotas (IAM user guide, "IAM and AWS
# STS quotas"): a permission set is provisioned as an AWSReservedSSO_* role in each account, so
# the role's IAM limits are the ones that bite at provisioning time.
MAX_INLINE_BYTES = 32_768  # Identity Center: one inline policy per permission set
MAX_INLINE_CHARS = 10_240  # IAM: role inline policies, whitespace not counted
MAX_MANAGED_PER_ROLE = 10  # IAM default managed policies per role (adjustable)
MAX_MANAGED_PER_PERMISSION_SET = 20  # Identity Center; irrelevant once it is a role
MAX_NAME_LENGTH = 32
MAX_DESCRIPTION_LENGTH = 700
DEFAULT_MAX_PERMISSION_SETS = 2_000  # per instance, adjustable up to 3,500
DEFAULT_MAX_PER_ACCOUNT = 250  # provisioned per account, 250-500: stay conservative

_MESSAGE_NAMES = 5  # holders named in a message before "and N more"


def _names_text(names: list[str]) -> str:
    shown = ", ".join(names[:_MESSAGE_NAMES])
    more = len(names) - _MESSAGE_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def check_quotas(
    result: SynthesisResult,
    max_permission_sets: int,
    max_per_account: int,
    max_managed_policies: int,
) -> None:
    by_name = {p.name: p for p in result.permission_sets}
    holders_of: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for assignment in result.assignments:
        holders_of[assignment.permission_set_name][assignment.account_id].append(assignment.reason)
    for name, permission_set in by_name.items():
        problems = _set_problems(permission_set, max_managed_policies)
        for account_id, reasons in sorted(holders_of[name].items()):
            for kind, what, numbers in problems:
                result.findings.append(
                    Finding(
                        severity="blocking",
                        kind=kind,
                        message=f"Permission set {name} for {_names_text(reasons)} in "
                        f"{account_id}: {what}",
                        account_id=account_id,
                        subject=", ".join(reasons),
                        details={"permission_set": name, "holders": reasons, **numbers},
                    )
                )

    total = len(result.permission_sets)
    if total > max_permission_sets:
        result.findings.append(
            Finding(
                severity="blocking",
                kind="quota-permission-sets",
                message=f"{total} permission sets > {max_permission_sets} per Identity Center "
                "instance (IAM Identity Center quotas; adjustable up to 3,500)",
                details={"permission_sets": total, "limit": max_permission_sets},
            )
        )
    per_account: dict[str, set[str]] = defaultdict(set)
    for assignment in result.assignments:
        per_account[assignment.account_id].add(assignment.permission_set_name)
    for account_id, names in sorted(per_account.items()):
        if len(names) > max_per_account:
            result.findings.append(
                Finding(
                    severity="blocking",
                    kind="quota-permission-sets-per-account",
                    message=f"{len(names)} permission sets provisioned to {account_id} > "
                    f"{max_per_account} per account (IAM Identity Center quotas: 250-500)",
                    account_id=account_id,
                    details={"permission_sets": len(names), "limit": max_per_account},
                )
            )


def _set_problems(
    permission_set: PermissionSetDefinition, max_managed: int
) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, message, numbers) for each quota the permission set breaks."""
    problems: list[tuple[str, str, dict[str, Any]]] = []
    managed = len(permission_set.aws_managed_policy_arns) + len(
        permission_set.customer_managed_policies
    )
    if managed > max_managed:
        problems.append(
            (
                "quota-managed-policies",
                f"{managed} managed policies > {max_managed} per role (IAM quota for managed "
                f"policies per role; Identity Center allows {MAX_MANAGED_PER_PERMISSION_SET} "
                "per permission set, but provisions it as an AWSReservedSSO_ role)",
                {
                    "managed_policies": managed,
                    "limit": max_managed,
                    "identity_center_limit": MAX_MANAGED_PER_PERMISSION_SET,
                },
            )
        )
    text = permission_set.inline_policy_json
    if text is not None:
        size = len(text.encode("utf-8"))
        chars = sum(1 for c in text if not c.isspace())
        if size > MAX_INLINE_BYTES:
            problems.append(
                (
                    "quota-inline-size",
                    f"merged inline policy is {size:,} bytes > {MAX_INLINE_BYTES:,} bytes "
                    "(IAM Identity Center quotas: inline policy size)",
                    {"bytes": size, "limit": MAX_INLINE_BYTES, "characters": chars},
                )
            )
        if chars > MAX_INLINE_CHARS:
            problems.append(
                (
                    "quota-inline-chars",
                    f"merged inline policy has {chars:,} non-whitespace characters > "
                    f"{MAX_INLINE_CHARS:,} (IAM quota for a role's inline policies, the stricter "
                    "limit once provisioned as an AWSReservedSSO_ role)",
                    {"characters": chars, "limit": MAX_INLINE_CHARS, "bytes": size},
                )
            )
    return problems


# Kinds of plan actions that add one IAM role to their account: a permission set provisioned
# there for the first time (its AWSReservedSSO_ role), the replace stage's workload role, and
# the central-roles target's member role of an access.
_NEW_ROLE_KINDS = ("provision-permission-set", "create-workload-role", "create-member-role")


def role_quota_findings(
    inventories: list[AccountInventory],
    actions: list[PlanAction],
    provisioned: Collection[tuple[str, str]] = (),
) -> list[Finding]:
    """A blocking finding per account where the roles the plan adds exceed the IAM role quota.

    The inventory read each account's ``Roles`` and ``RolesQuota`` (IAM GetAccountSummary;
    1,000 by default, adjustable). Re-provisioning a set already in the account (an update)
    adds no role; an account whose summary was not read is not checked.

    Args:
        inventories: The plan's accounts, with ``roles`` and ``roles_quota``.
        actions: Every stage's planned actions.
        provisioned: (account id, set name) an earlier wave already provisioned (its role
            is there, counted in ``Roles``).
    """
    adding: dict[str, int] = defaultdict(int)
    for action in actions:
        # Re-provisioning a set the account already has (an update) adds no role.
        new = action.kind in _NEW_ROLE_KINDS and not action.params.get("reprovision")
        new = new and (action.account_id, action.target) not in provisioned
        if new and action.account_id:
            adding[action.account_id] += 1
    findings = []
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        account_id = inventory.account.account_id
        roles, quota, added = inventory.roles, inventory.roles_quota, adding.get(account_id, 0)
        if roles is None or quota is None or not added or roles + added <= quota:
            continue
        findings.append(
            Finding(
                severity="blocking",
                kind="quota-roles",
                message=f"account {account_id}: {roles:,} roles + {added:,} to add > quota "
                f"{quota:,} (IAM quota for roles per account, from GetAccountSummary; each "
                "permission set provisioned there is an AWSReservedSSO_ role, each central-roles "
                "access a member role): raise the quota or plan fewer there",
                account_id=account_id,
                details={"roles": roles, "adding": added, "limit": quota},
            )
        )
    return findings
