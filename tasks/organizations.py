"""The organization's accounts and OUs, and which of them a migration spec puts in scope."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import boto3
from botocore.exceptions import ClientError

from domain.errors import UnknownAccountError
from domain.records import Account, Finding
from domain.spec import Scope
from tasks.aws import error_code, pages, translate_errors

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "organizations:DescribeOrganization",
    "organizations:ListAccounts",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListAccountsForParent",
    "organizations:ListParents",
)

# Account states we can't (or shouldn't) inventory. `State` replaced the deprecated `Status`
# field in 2025 (Organizations API reference, Account); we read either.
_INACTIVE_STATES = {"SUSPENDED", "PENDING_CLOSURE", "CLOSED"}

# How Organizations answers a ParentId that is not one of its OUs or roots: a well-formed id it
# does not have is ParentNotFoundException, a malformed one InvalidInputException
# (Organizations API reference, ListAccountsForParent, Errors).
_NOT_A_PARENT = frozenset({"ParentNotFoundException", "InvalidInputException"})


@dataclass
class OrganizationTree:
    """The organization's accounts, and the OU subtrees a scope named, read from AWS.

    Only the subtrees of OUs and roots that were asked for are walked, so an account outside
    them has ``parent_id`` None and an empty :meth:`ancestors` chain: nothing named it.
    """

    management_account_id: str
    accounts: dict[str, Account] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # OU id -> parent (OU or root) id
    nodes: set[str] = field(default_factory=set)  # OU and root ids known to exist (walked)

    def ancestors(self, account_id: str) -> list[str]:
        """The account's parent chain, as far up as the walked subtrees reach: [parent, ...]."""
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
    management_account_id: str = ""  # the organization's (DescribeOrganization)


def _is_account_id(value: str) -> bool:
    return value.isdigit()


def _account(raw: dict, parent_id: str | None) -> Account:
    return Account(
        account_id=raw["Id"],
        name=raw.get("Name", ""),
        email=raw.get("Email", ""),
        status=raw.get("State") or raw.get("Status", "ACTIVE"),
        parent_id=parent_id,
    )


def read_organization(
    session: boto3.Session,
    scope: Scope,
    also_walk: Iterable[str] = (),
    every_account: bool = False,
) -> OrganizationTree:
    """Read what ``scope`` needs of the organization, with calls that grow with what it names.

    ``"*"`` and account ids need only ``ListAccounts`` (paginated, 20 accounts a page); each OU
    or root the scope names costs a walk of its subtree (ListAccountsForParent and
    ListOrganizationalUnitsForParent per OU under it). Organizations publishes no rate and
    throttles readily, so the whole tree is never walked just in case.

    Args:
        session: The management account's session.
        scope: The spec's include/exclude; every OU or root it names must exist.
        also_walk: More OU or root ids whose accounts' parents are wanted (a spec's waves);
            one the organization does not have is skipped, not an error.
        every_account: List every account of the organization even if the scope names only
            OUs (the key scan tells keys of accounts outside the scope apart).

    Raises:
        AwsAccessError: credentials refused, or this is not an organization's management account.
        UnknownAccountError: the scope names an OU or root the organization does not have.
    """
    client = session.client("organizations")
    with translate_errors(operation="organizations:DescribeOrganization"):
        org = client.describe_organization()["Organization"]
    tree = OrganizationTree(management_account_id=org["MasterAccountId"])
    named = [*scope.include_accounts, *scope.exclude_accounts]
    if every_account or any(v == "*" or _is_account_id(v) for v in named):
        with translate_errors(operation="organizations:ListAccounts"):
            for raw in pages(client, "list_accounts", "Accounts"):
                tree.accounts[raw["Id"]] = _account(raw, parent_id=None)
    for key, values in (
        ("scope.include_accounts", scope.include_accounts),
        ("scope.exclude_accounts", scope.exclude_accounts),
    ):
        for value in values:
            if value == "*" or _is_account_id(value):
                continue
            if not _walk(client, tree, value):
                raise UnknownAccountError(
                    f"{key}: {value} is not an account, OU or root of organization "
                    f"(management account {tree.management_account_id})"
                )
    for node in also_walk:
        if not _is_account_id(node) and node != "*" and not _walk(client, tree, node):
            log.info("%s is not an OU or root of the organization: not walked", node)
    return tree


def _walk(client, tree: OrganizationTree, top: str) -> bool:
    """Add the subtree under ``top`` to the tree (once); False if ``top`` is no OU or root."""
    pending = [top]
    while pending:
        parent = pending.pop()
        if parent in tree.nodes:
            continue  # already walked as part of another named subtree
        try:
            with translate_errors(operation="organizations:ListAccountsForParent"):
                accounts = list(
                    pages(client, "list_accounts_for_parent", "Accounts", ParentId=parent)
                )
        except ClientError as err:
            if parent == top and error_code(err) in _NOT_A_PARENT:
                return False
            raise
        tree.nodes.add(parent)
        for raw in accounts:
            tree.accounts[raw["Id"]] = _account(raw, parent_id=parent)
        with translate_errors(operation="organizations:ListOrganizationalUnitsForParent"):
            for ou in pages(
                client,
                "list_organizational_units_for_parent",
                "OrganizationalUnits",
                ParentId=parent,
            ):
                tree.parents[ou["Id"]] = parent
                pending.append(ou["Id"])
    return True


def select_accounts(tree: OrganizationTree, scope: Scope) -> ScopedAccounts:
    """Apply the spec's include/exclude (account ids, OU ids, root ids, "*") to the tree.

    The management account is never in scope: CIS 1.21 is about member accounts, and the
    member role does not exist there. Suspended or closing accounts are skipped with a finding.

    Raises:
        UnknownAccountError: the scope names an account or OU that is not in the organization.
    """
    known_nodes = tree.nodes | set(tree.parents)
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
    return ScopedAccounts(
        in_scope=in_scope, findings=findings, management_account_id=tree.management_account_id
    )


def account_ancestors(
    session: boto3.Session, account_ids: list[str], nodes: Iterable[str]
) -> tuple[dict[str, list[str]], set[str]]:
    """Each account's parent chain within the subtrees of ``nodes``, for resolving waves by OU.

    Args:
        session: The management account's session.
        account_ids: The accounts to place (those of the inventory).
        nodes: The OU and root ids the waves name; only their subtrees are walked.

    Returns:
        ``(account id -> [parent OU, ...], the ids of ``nodes`` that exist and the OUs under
        them)``; an account under none of them (or gone from the organization) gets an empty
        chain.
    """
    client = session.client("organizations")
    tree = OrganizationTree(management_account_id="")
    for node in nodes:
        if not _is_account_id(node):
            _walk(client, tree, node)
    chains = {a: tree.ancestors(a) if a in tree.accounts else [] for a in account_ids}
    return chains, tree.nodes | set(tree.parents)


def parent_of(session: boto3.Session, account_id: str) -> str | None:
    """The account's parent OU or root id (one ListParents call); None if it has none.

    Raises:
        AwsAccessError: credentials refused.
        botocore.exceptions.ClientError: e.g. ``ChildNotFoundException`` for an account the
            organization does not have.
    """
    client = session.client("organizations")
    with translate_errors(operation="organizations:ListParents"):
        parents = list(pages(client, "list_parents", "Parents", ChildId=account_id))
    return parents[0]["Id"] if parents else None
