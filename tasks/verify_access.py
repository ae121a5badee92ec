"""Did the access land? Per migrated person and account: assignments, the SSO roles, no less access.

For each person the plan migrates, in each account it names:

1. every planned account assignment of their permission sets exists in Identity Center;
2. each of those sets is provisioned: the role ``AWSReservedSSO_<set>_<hex>`` exists under
   ``/aws-reserved/sso.amazonaws.com/`` with the set's managed policies attached and its inline
   policy as ``AwsSSOInlinePolicy`` (IAM Identity Center User Guide, "IAM roles created by IAM
   Identity Center");
3. the role's IAM permissions boundary is the set's (an AWS-managed ARN, or the set's
   customer-managed reference resolved in that account), read with GetRole: ListRoles never
   returns a role's boundary (IAM API reference, ListRoles);
4. nobody is left with less than their old IAM user had: the managed policies the user held
   (its own and its groups') are all attached to those roles, and every statement of its inline
   policies is in the roles' inline policies, compared in canonical form;
4. for a person whose access the plan trimmed to what was used ([least_privilege] mode
   "trim"), 3 allows what the plan says they lose, and instead nobody lost anything they used
   in the window: every action of their usage is allowed by one of their roles (IAM's policy
   simulator, ``tasks.policy_simulator``), and every service they used at service level only
   is still granted by one of their sets.

Reads only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import boto3

from domain.access import boundary_policy_arn, effective_access
from domain.plan import Outcome, Plan
from domain.policy_documents import statement_pairs
from domain.records import AccountInventory
from domain.usage import UsageRead
from tasks.aws import pages as _pages
from tasks.aws import translate_errors
from tasks.permission_sets import permission_set_names
from tasks.verify_use import check_used_access, trimmed_users

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "sso:ListPermissionSets",
    "sso:DescribePermissionSet",
    "sso:ListAccountAssignments",
    "iam:ListRoles",
    "iam:GetRole",
    "iam:ListAttachedRolePolicies",
    "iam:GetRolePolicy",
)

SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"
SSO_INLINE_POLICY = "AwsSSOInlinePolicy"


@dataclass
class SsoRole:
    """A provisioned permission set's role in one account, as IAM shows it."""

    name: str
    managed_policy_arns: set[str] = field(default_factory=set)
    arn: str = ""
    inline_statements: set[str] = field(default_factory=set)  # canonical statement keys
    inline_document: dict[str, Any] | None = None
    boundary_arn: str | None = None  # its IAM permissions boundary (GetRole)


@dataclass
class AccessCheck:
    """One person in one account: what was checked and what is wrong, if anything."""

    identity: str
    account_id: str
    iam_users: list[str]
    permission_sets: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def columns(self) -> dict[str, str]:
        """The verify table's columns of this target."""
        return {
            "old IAM users": ", ".join(self.iam_users),
            "permission sets": ", ".join(self.permission_sets),
        }


def inline_keys(document: dict[str, Any] | str | None) -> set[str]:
    """The canonical keys of a policy document's statements (as synthesis merges them)."""
    if not document:
        return set()
    if isinstance(document, str):
        document = json.loads(unquote(document) if document.startswith("%") else document)
    return {key for key, _ in statement_pairs(document)}


def sso_roles(iam: Any) -> dict[str, SsoRole]:
    """Permission set name -> its role in the account (under the Identity Center path)."""
    found: dict[str, SsoRole] = {}
    for role in _pages(iam, "list_roles", "Roles", PathPrefix=SSO_ROLE_PATH):
        name = role["RoleName"]
        if not name.startswith("AWSReservedSSO_"):
            continue
        # AWSReservedSSO_<set name>_<16 hex>; a set name may itself contain "_".
        set_name = name[len("AWSReservedSSO_") :].rsplit("_", 1)[0]
        attached = {
            p["PolicyArn"]
            for p in _pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
        }
        document = None
        with contextlib.suppress(iam.exceptions.NoSuchEntityException):
            document = iam.get_role_policy(RoleName=name, PolicyName=SSO_INLINE_POLICY)[
                "PolicyDocument"
            ]
        if isinstance(document, str):
            document = json.loads(unquote(document))
        boundary = (iam.get_role(RoleName=name)["Role"].get("PermissionsBoundary") or {}).get(
            "PermissionsBoundaryArn"
        )
        found[set_name] = SsoRole(
            name,
            attached,
            arn=role["Arn"],
            inline_statements=inline_keys(document),
            inline_document=document,
            boundary_arn=boundary,
        )
    return found


def held_access(inventory: AccountInventory, user_name: str) -> tuple[set[str], set[str]]:
    """(managed policy ARNs, inline statement keys) an IAM user held, its groups' included."""
    user = next((u for u in inventory.users if u.name == user_name), None)
    if user is None:
        return set(), set()
    found = effective_access(user, inventory.groups)
    statements: set[str] = set()
    for _, policy in found.inline_policies:
        statements |= inline_keys(policy.document)
    return set(found.managed_policy_arns), statements


def missing_access(
    held: tuple[set[str], set[str]], given: tuple[set[str], set[str]]
) -> tuple[list[str], int]:
    """What an IAM user held that the roles don't give: (managed ARNs, inline statement count)."""
    return sorted(held[0] - given[0]), len(held[1] - given[1])


def expected_policy_arns(definition: dict[str, Any], account_id: str) -> set[str]:
    """The managed policy ARNs a permission set's role carries in an account."""
    arns = set(definition.get("aws_managed_policy_arns") or [])
    for ref in definition.get("customer_managed_policies") or []:
        path = ref.get("path") or "/"
        arns.add(f"arn:aws:iam::{account_id}:policy{path}{ref['name']}")
    return arns


def verify_account(
    plan: Plan,
    account_id: str,
    inventory: AccountInventory | None,
    sso: Any,
    instance_arn: str,
    set_arns: dict[str, str],
    member: boto3.Session,
    usage: UsageRead | None = None,
) -> list[AccessCheck]:
    """Check every person the plan migrates in one account (see the module docstring);
    ``usage``: the latest usage read, for the people the plan trimmed."""
    people: dict[str, AccessCheck] = {}
    for user in plan.users:
        if user.account_id != account_id or user.outcome != Outcome.MIGRATE:
            continue
        identity = user.identity or user.user
        check = people.setdefault(identity, AccessCheck(identity, account_id, [], []))
        check.iam_users.append(user.user)
        check.permission_sets = sorted(set(check.permission_sets) | set(user.permission_sets))
    if not people:
        return []
    definitions = {d["name"]: d for d in plan.permission_sets}
    trimmed = trimmed_users(plan, account_id)
    iam = member.client("iam")
    with translate_errors(account_id=account_id, operation="iam:ListRoles"):
        roles = sso_roles(iam)
    assigned: dict[str, set[tuple[str, str]]] = {}

    def live_assignments(set_name: str) -> set[tuple[str, str]]:
        if set_name not in assigned:
            arn = set_arns.get(set_name)
            assigned[set_name] = (
                set() if arn is None else _assignments(sso, instance_arn, account_id, arn)
            )
        return assigned[set_name]

    for check in people.values():
        given: tuple[set[str], set[str]] = (set(), set())
        for set_name in check.permission_sets:
            planned = [
                a
                for a in plan.assignments
                if a["account_id"] == account_id and a["permission_set_name"] == set_name
            ]
            live = live_assignments(set_name)
            for a in planned:
                if (a["principal_type"], a["principal_id"]) not in live:
                    check.problems.append(
                        f"assignment of {set_name} to {a['principal_type'].lower()} "
                        f"{a['principal_name']} is missing"
                    )
            role = roles.get(set_name)
            _check_role(check, set_name, role, definitions.get(set_name, {}))
            if role is not None:
                given[0].update(role.managed_policy_arns)
                given[1].update(role.inline_statements)
        if inventory is not None:
            _check_held_access(check, inventory, given, trimmed)
        if lost := [u for u in check.iam_users if u in trimmed]:
            mine = {name: roles.get(name) for name in check.permission_sets}
            check_used_access(check, lost, usage, mine, inventory, iam)
    return sorted(people.values(), key=lambda c: c.identity)


def _assignments(sso: Any, instance_arn: str, account_id: str, arn: str) -> set[tuple[str, str]]:
    return {
        (a["PrincipalType"], a["PrincipalId"])
        for a in _pages(
            sso,
            "list_account_assignments",
            "AccountAssignments",
            InstanceArn=instance_arn,
            AccountId=account_id,
            PermissionSetArn=arn,
        )
    }


def _check_role(
    check: AccessCheck, set_name: str, role: SsoRole | None, definition: dict[str, Any]
) -> None:
    """The permission set's role in the account exists and carries the set's policies."""
    if role is None:
        check.problems.append(
            f"no AWSReservedSSO_{set_name}_* role under {SSO_ROLE_PATH}: the permission "
            "set is not provisioned to this account"
        )
        return
    wanted = expected_policy_arns(definition, check.account_id)
    if wanted - role.managed_policy_arns:
        check.problems.append(
            f"role {role.name} lacks {', '.join(sorted(wanted - role.managed_policy_arns))}"
        )
    if inline_keys(definition.get("inline_policy")) - role.inline_statements:
        check.problems.append(
            f"role {role.name}: {SSO_INLINE_POLICY} differs from the permission set's inline policy"
        )
    boundary = definition.get("permissions_boundary")
    expected = boundary_policy_arn(boundary, check.account_id) if boundary else None
    if role.boundary_arn != expected:
        # Removed or changed by hand in the account (or not provisioned since the set changed):
        # the role may grant more than the set allows.
        check.problems.append(
            f"account {check.account_id}, permission set {set_name}: role {role.name} has "
            f"permissions boundary {role.boundary_arn or 'none'}, expected {expected or 'none'}"
        )


def _check_held_access(
    check: AccessCheck,
    inventory: AccountInventory,
    given: tuple[set[str], set[str]],
    trimmed: dict[str, list[dict[str, Any]]],
) -> None:
    """Each of the person's IAM users held nothing the assigned roles don't give, but for
    what the plan trimmed (checked by use instead: ``tasks.verify_use``)."""
    for iam_user in check.iam_users:
        missing, statements = missing_access(held_access(inventory, iam_user), given)
        losses = trimmed.get(iam_user, [])
        # By full ARN: another policy of the same name (another path, a customer-managed
        # policy named like an AWS-managed one) is not what the plan trimmed. A plan made
        # before losses carried ARNs excuses nothing (re-plan).
        dropped = {arn for loss in losses for arn in loss.get("policy_arns_removed", [])}
        missing = [arn for arn in missing if arn not in dropped]
        if any(loss["statements_narrowed"] or loss.get("policies_narrowed") for loss in losses):
            statements = 0  # narrowed by the plan: what was used is checked by use
        if missing:
            check.problems.append(
                f"IAM user {iam_user} held {', '.join(missing)}, which no assigned role gives"
            )
        if statements:
            check.problems.append(
                f"IAM user {iam_user} held {statements} inline policy statement(s) that no "
                "assigned role's inline policy has"
            )


def permission_set_arns(sso: Any, instance_arn: str) -> dict[str, str]:
    """Permission set name -> ARN, for the whole instance (read once per run)."""
    return permission_set_names(sso, instance_arn)


SessionFor = Callable[[str], boto3.Session]
