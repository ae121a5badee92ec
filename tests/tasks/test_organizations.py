"""Scope: include/exclude by account, OU and root; suspended and management accounts skipped."""

from __future__ import annotations

import pytest

from domain.errors import UnknownAccountError
from domain.spec import Scope
from tasks.aws import AwsSessions
from tasks.organizations import select_accounts, walk_organization


@pytest.fixture
def org(aws):
    session = AwsSessions(region="us-east-1").management()
    client = session.client("organizations")
    client.create_organization(FeatureSet="ALL")
    root = client.list_roots()["Roots"][0]["Id"]
    workloads = client.create_organizational_unit(ParentId=root, Name="Workloads")[
        "OrganizationalUnit"
    ]["Id"]
    prod = client.create_organizational_unit(ParentId=workloads, Name="Prod")["OrganizationalUnit"][
        "Id"
    ]
    ids = {}
    for name, parent in [("prod-a", prod), ("prod-b", prod), ("dev", workloads), ("sec", root)]:
        account_id = client.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        if parent != root:
            client.move_account(
                AccountId=account_id, SourceParentId=root, DestinationParentId=parent
            )
        ids[name] = account_id
    return session, {"root": root, "workloads": workloads, "prod": prod, **ids}


def names(scoped):
    return sorted(a.name for a in scoped.in_scope)


def test_everything_but_the_management_account(org):
    session, _ = org
    tree = walk_organization(session)
    scoped = select_accounts(tree, Scope())
    assert names(scoped) == ["dev", "prod-a", "prod-b", "sec"]
    assert [f.kind for f in scoped.findings] == ["management-account-skipped"]


def test_nested_ou_include_and_account_exclude(org):
    session, ids = org
    tree = walk_organization(session)
    scoped = select_accounts(
        tree, Scope(include_accounts=[ids["workloads"]], exclude_accounts=[ids["prod-b"]])
    )
    assert names(scoped) == ["dev", "prod-a"]
    scoped = select_accounts(tree, Scope(include_accounts=["*"], exclude_accounts=[ids["prod"]]))
    assert names(scoped) == ["dev", "sec"]


def test_unknown_account_is_a_clear_error(org):
    session, _ = org
    tree = walk_organization(session)
    with pytest.raises(UnknownAccountError, match=r"scope\.include_accounts: 999999999999 is not"):
        select_accounts(tree, Scope(include_accounts=["999999999999"]))
    with pytest.raises(UnknownAccountError, match=r"scope\.exclude_accounts: ou-zzzz-zzzzzzzz"):
        select_accounts(tree, Scope(exclude_accounts=["ou-zzzz-zzzzzzzz"]))


def test_suspended_account_is_skipped_with_a_finding(org):
    session, ids = org
    session.client("organizations").close_account(AccountId=ids["dev"])
    tree = walk_organization(session)
    scoped = select_accounts(tree, Scope())
    assert "dev" not in names(scoped)
    skipped = [f for f in scoped.findings if f.kind == "account-not-active"]
    assert [f.account_id for f in skipped] == [ids["dev"]]
    assert tree.accounts[ids["dev"]].status in {"SUSPENDED", "PENDING_CLOSURE"}
