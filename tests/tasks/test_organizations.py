"""Scope: include/exclude by account, OU and root; suspended and management accounts skipped;
Organizations calls that grow with what the scope names, not with the tree."""

from __future__ import annotations

from collections import Counter

import pytest

from domain.errors import UnknownAccountError
from domain.spec import Scope
from tasks.aws import AwsSessions
from tasks.organizations import account_ancestors, parent_of, read_organization, select_accounts


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
    scoped = select_accounts(read_organization(session, Scope()), Scope())
    assert names(scoped) == ["dev", "prod-a", "prod-b", "sec"]
    assert [f.kind for f in scoped.findings] == ["management-account-skipped"]


def test_nested_ou_include_and_account_exclude(org):
    session, ids = org
    scope = Scope(include_accounts=[ids["workloads"]], exclude_accounts=[ids["prod-b"]])
    scoped = select_accounts(read_organization(session, scope), scope)
    assert names(scoped) == ["dev", "prod-a"]
    scope = Scope(include_accounts=["*"], exclude_accounts=[ids["prod"]])
    scoped = select_accounts(read_organization(session, scope), scope)
    assert names(scoped) == ["dev", "sec"]
    scope = Scope(include_accounts=[ids["root"]], exclude_accounts=[ids["workloads"]])
    scoped = select_accounts(read_organization(session, scope), scope)
    assert names(scoped) == ["sec"]


def test_unknown_account_is_a_clear_error(org):
    session, _ = org
    scope = Scope(include_accounts=["999999999999"])
    with pytest.raises(UnknownAccountError, match=r"scope\.include_accounts: 999999999999 is not"):
        select_accounts(read_organization(session, scope), scope)
    with pytest.raises(UnknownAccountError, match=r"scope\.exclude_accounts: ou-zzzz-zzzzzzzz"):
        read_organization(session, Scope(exclude_accounts=["ou-zzzz-zzzzzzzz"]))
    with pytest.raises(UnknownAccountError, match=r"scope\.include_accounts: ou-zzzz-zzzzzzzz"):
        read_organization(session, Scope(include_accounts=["ou-zzzz-zzzzzzzz"]))


def test_suspended_account_is_skipped_with_a_finding(org):
    session, ids = org
    session.client("organizations").close_account(AccountId=ids["dev"])
    tree = read_organization(session, Scope())
    scoped = select_accounts(tree, Scope())
    assert "dev" not in names(scoped)
    skipped = [f for f in scoped.findings if f.kind == "account-not-active"]
    assert [f.account_id for f in skipped] == [ids["dev"]]
    assert tree.accounts[ids["dev"]].status in {"SUSPENDED", "PENDING_CLOSURE"}


def count_calls(session) -> Counter[str]:
    """Organizations operations the session sends from now on (a botocore event hook)."""
    calls: Counter[str] = Counter()

    def before_call(model, **_):
        calls[model.name] += 1

    session.events.register("before-call.organizations", before_call)
    return calls


def test_everything_is_one_list_accounts_however_deep_the_tree(org):
    session, ids = org
    calls = count_calls(session)
    tree = read_organization(session, Scope())
    assert calls == {"DescribeOrganization": 1, "ListAccounts": 1}
    assert set(tree.accounts) >= {ids["dev"], ids["prod-a"], ids["sec"]}
    # Nothing named an OU: no parents were read, and none are needed.
    assert {a.parent_id for a in tree.accounts.values()} == {None}
    calls.clear()
    read_organization(session, Scope(include_accounts=[ids["dev"], ids["sec"]]))
    assert calls == {"DescribeOrganization": 1, "ListAccounts": 1}


def test_an_ou_scope_walks_only_that_subtree(org):
    session, ids = org
    calls = count_calls(session)
    tree = read_organization(session, Scope(include_accounts=[ids["workloads"]]))
    # Workloads and Prod: one ListAccountsForParent and one ListOrganizationalUnitsForParent
    # each; the root, "sec" and the management account are never read.
    assert calls == {
        "DescribeOrganization": 1,
        "ListAccountsForParent": 2,
        "ListOrganizationalUnitsForParent": 2,
    }
    assert {a: tree.accounts[a].parent_id for a in tree.accounts} == {
        ids["dev"]: ids["workloads"],
        ids["prod-a"]: ids["prod"],
        ids["prod-b"]: ids["prod"],
    }
    assert tree.ancestors(ids["prod-a"]) == [ids["prod"], ids["workloads"]]

    # Everything but one OU: ListAccounts, plus the excluded subtree (Prod has no OUs below).
    calls.clear()
    scope = Scope(include_accounts=["*"], exclude_accounts=[ids["prod"]])
    tree = read_organization(session, scope)
    assert calls == {
        "DescribeOrganization": 1,
        "ListAccounts": 1,
        "ListAccountsForParent": 1,
        "ListOrganizationalUnitsForParent": 1,
    }
    assert tree.accounts[ids["prod-a"]].parent_id == ids["prod"]
    assert tree.accounts[ids["dev"]].parent_id is None


def test_a_nested_ou_named_too_is_walked_once(org):
    session, ids = org
    calls = count_calls(session)
    scope = Scope(include_accounts=[ids["prod"], ids["workloads"]])
    tree = read_organization(session, scope)
    assert calls["ListAccountsForParent"] == 2
    assert tree.ancestors(ids["prod-a"]) == [ids["prod"], ids["workloads"]]
    assert names(select_accounts(tree, scope)) == ["dev", "prod-a", "prod-b"]


def test_every_account_for_the_key_scan_even_with_an_ou_scope(org):
    session, ids = org
    tree = read_organization(session, Scope(include_accounts=[ids["prod"]]), every_account=True)
    assert {ids["dev"], ids["sec"], tree.management_account_id} <= set(tree.accounts)
    assert tree.accounts[ids["prod-b"]].parent_id == ids["prod"]


def test_wave_ous_are_walked_and_an_unknown_one_is_only_unknown(org):
    session, ids = org
    chains, nodes = account_ancestors(
        session, [ids["prod-a"], ids["dev"], ids["sec"]], [ids["prod"], "ou-zzzz-zzzzzzzz"]
    )
    assert chains == {ids["prod-a"]: [ids["prod"]], ids["dev"]: [], ids["sec"]: []}
    assert nodes == {ids["prod"]}
    tree = read_organization(session, Scope(), also_walk=[ids["workloads"], "ou-zzzz-zzzzzzzz"])
    assert tree.accounts[ids["dev"]].parent_id == ids["workloads"]


def test_parent_of_an_account(org):
    session, ids = org
    assert parent_of(session, ids["prod-a"]) == ids["prod"]
    assert parent_of(session, ids["sec"]) == ids["root"]


def test_waves_by_ou_walk_only_the_wave_ous(org, monkeypatch):
    import botocore.session

    from domain.errors import WaveError
    from domain.records import AccountInventory
    from domain.spec import MigrationSpec
    from flows.plan import wave_accounts

    session, ids = org
    inventories = [
        AccountInventory(account=read_organization(session, Scope()).accounts[ids[name]])
        for name in ("prod-a", "prod-b", "dev", "sec")
    ]
    spec = MigrationSpec(
        name="waves",
        waves=[
            {"name": "prod", "include_accounts": [ids["prod"]]},
            {
                "name": "rest",
                "include_accounts": [ids["workloads"], ids["sec"]],
                "exclude_accounts": [ids["prod"]],
            },
        ],
    )
    # flows.plan makes its own sessions: count on every organizations client made.
    counted: Counter[str] = Counter()
    original = botocore.session.Session.create_client

    def counting_client(self, service_name, *args, **kwargs):
        client = original(self, service_name, *args, **kwargs)
        if service_name == "organizations":
            client.meta.events.register(
                "before-call.organizations", lambda model, **_: counted.update([model.name])
            )
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", counting_client)
    waves = wave_accounts(spec, inventories)
    assert waves == {
        "prod": sorted([ids["prod-a"], ids["prod-b"]]),
        "rest": sorted([ids["dev"], ids["sec"]]),
    }
    # Workloads and Prod are walked (Prod once); the root and the management account are not.
    assert counted == {"ListAccountsForParent": 2, "ListOrganizationalUnitsForParent": 2}

    spec = MigrationSpec(
        name="waves", waves=[{"name": "gone", "include_accounts": ["ou-zzzz-zzzzzzzz"]}]
    )
    with pytest.raises(WaveError, match="ou-zzzz-zzzzzzzz is not an OU or root"):
        wave_accounts(spec, inventories)
