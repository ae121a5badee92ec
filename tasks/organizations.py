"""The organization's accounts and OUs, and which of them a migration spec puts in scope."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import boto3

from domain.errors import UnknownAccountError
from domain.records import Account, Finding
from domain.spec import Scope
from tasks.aws import translate_errors

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "organizations:DescribeOrganization",
    "organizations:ListRoots",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListAccountsForParent",
)

# Account states we can't (or shouldn't) inventory. `State` replaced the deprecated `Status`
# field in 2025 (Organizations API reference, Account); we read either.
_INACTIVE_STATES = {"SUSPENDED", "PENDING_CLOSURE", "CLOSED"}


@dataclass
class OrganizationTree:
    """Accounts with their parent, and each OU's parent, from one walk from the root."""

    management_account_id: str
    accounts: dict[str, Account] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # OU id -> parent (OU or root) id
    roots: list[str] = field(default_factory=list)

    def ancestors(self, account_id: str) -> list[str]:
        """The account's parent chain up to the root: [parent OU, ..., root]."""
        chain = []
        node = self.accounts[account_id].parent_id
        while node:
            chain.append(node)
            node = self.parents.get(node)
        return chain


@dataclass
class ScopedAccounts:
    in_scope: list[Account]
    findings: list[Finding]


def _paginate(client, operation: str, key: str, **kwargs):
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page[key]


def walk_organization(session: boto3.Session) -> OrganizationTree:
    """Read the whole tree: calls grow with the number of OUs, not with accounts.

    Raises:
        AwsAccessError: credentials refused, or this is not an organization's management account.
    """
    client = session.client("organizations")
    with translate_errors(operation="organizations:DescribeOrganization"):
        org = client.describe_organization()["Organization"]
    tree = OrganizationTree(management_account_id=org["MasterAccountId"])
    pending = [root["Id"] for root in _paginate(client, "list_roots", "Roots")]
    tree.roots = list(pending)
    while pending:
        parent = pending.pop()
        for raw in _paginate(client, "list_accounts_for_parent", "Accounts", ParentId=parent):
            tree.accounts[raw["Id"]] = Account(
                account_id=raw["Id"],
                name=raw.get("Name", ""),
                email=raw.get("Email", ""),
                status=raw.get("State") or raw.get("Status", "ACTIVE"),
                parent_id=parent,
            )
        for ou in _paginate(
            client, "list_organizational_units_for_parent", "OrganizationalUnits", ParentId=parent
        ):
            tree.parents[ou["Id"]] = parent
            pending.append(ou["Id"])
    return tree


def select_accounts(tree: OrganizationTree, scope: Scope) -> ScopedAccounts:
    """Apply the spec's include/exclude (account ids, OU ids, root ids, "*") to the tree.

    The management account is never in scope: CIS 1.21 is about member accounts, and the
    member role does not exist there. Suspended or closing accounts are skipped with a finding.

    Raises:
        UnknownAccountError: the scope names an account or OU that is not in the organization.
    """
    known_nodes = set(tree.parents) | set(tree.roots)
    for key, values in (
        ("scope.include_accounts", scope.include_accounts),
        ("scope.exclude_accounts", scope.exclude_accounts),
    ):
        for value in values:
            if value != "*" and value not in tree.accounts and value not in known_nodes:
                raise UnknownAccountError(
                    f"{key}: {value} is not an account, OU or root of organization "
                    f"(management account {tree.management_account_id})"
                )

    def matches(account_id: str, selectors: list[str]) -> bool:
        if "*" in selectors or account_id in selectors:
            return True
        return any(node in selectors for node in tree.ancestors(account_id))

    in_scope: list[Account] = []
    findings: list[Finding] = []
    for account_id in sorted(tree.accounts):
        account = tree.accounts[account_id]
        if not matches(account_id, scope.include_accounts):
            continue
        if matches(account_id, scope.exclude_accounts):
            continue
        if account_id == tree.management_account_id:
            findings.append(
                Finding(
                    severity="info",
                    kind="management-account-skipped",
                    message="the management account is not inventoried: CIS 1.21 covers member "
                    "accounts, and its IAM users need a separate review",
                    account_id=account_id,
                )
            )
            continue
        if account.status in _INACTIVE_STATES:
            findings.append(
                Finding(
                    severity="info",
                    kind="account-not-active",
                    message=f"account is {account.status}: skipped",
                    account_id=account_id,
                )
            )
            continue
        in_scope.append(account)
    return ScopedAccounts(in_scope=in_scope, findings=findings)


def account_ancestors(
    session: boto3.Session, account_ids: list[str]
) -> tuple[dict[str, list[str]], set[str]]:
    """Each account's parent chain, and every OU and root id, for resolving waves by OU.

    Args:
        session: The management account's session.
        account_ids: The accounts to place (those of the inventory).

    Returns:
        ``(account id -> [parent OU, ..., root], OU and root ids of the organization)``;
        an account the organization no longer has gets an empty chain.
    """
    tree = walk_organization(session)
    chains = {a: tree.ancestors(a) if a in tree.accounts else [] for a in account_ids}
    return chains, set(tree.parents) | set(tree.roots)
