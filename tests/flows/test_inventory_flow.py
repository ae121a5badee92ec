"""The inventory flow as a real Prefect flow run, against in-process moto and a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.records import UserClass
from flows.inventory import run_inventory
from state import Store
from tasks.aws import AwsSessions


@pytest.fixture
def organization(aws):
    """Two member accounts with users, one suspended account."""
    sessions = AwsSessions(region="us-east-1")
    org = sessions.management().client("organizations")
    org.create_organization(FeatureSet="ALL")
    ids = []
    for name in ("alpha", "beta", "gamma"):
        ids.append(
            org.create_account(AccountName=name, Email=f"{name}@example.com")[
                "CreateAccountStatus"
            ]["AccountId"]
        )
    org.close_account(AccountId=ids[2])
    alpha = sessions.for_account(ids[0]).client("iam")
    alpha.create_user(UserName="breakglass-root")
    alpha.create_login_profile(UserName="breakglass-root", Password="Sandbox-Only-1!")
    alpha.create_user(UserName="jane")
    alpha.create_login_profile(UserName="jane", Password="Sandbox-Only-1!")
    alpha.create_user(UserName="deployer")
    alpha.create_access_key(UserName="deployer")
    alpha.create_user(UserName="nobody")
    return ids


def write_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\nprotected_users = ["breakglass-*"]\n'
        "[inventory]\nconcurrency = 2\n"
    )
    return spec


def test_inventory_flow_writes_one_snapshot_per_run(organization, tmp_path):
    alpha, beta, gamma = organization
    spec = write_spec(tmp_path)

    summary = run_inventory(spec)

    assert summary["accounts"] == 2 and summary["users"] == 4 and summary["accounts_failed"] == []
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        run = store.runs.get_run(summary["run_id"])
        assert run.status == "succeeded" and run.kind == "inventory"
        inventories = {
            i.account.account_id: i for i in store.snapshots.load_snapshot(summary["snapshot_id"])
        }
        assert set(inventories) == {alpha, beta}
        classes = {u.name: u.user_class for u in inventories[alpha].users}
        assert classes == {
            "breakglass-root": UserClass.PROTECTED,
            "jane": UserClass.HUMAN,  # new console user: created days ago counts as activity
            "deployer": UserClass.WORKLOAD,
            "nobody": UserClass.UNUSED,
        }
        kinds = {(f.kind, f.account_id) for f in store.snapshots.findings(run_id=summary["run_id"])}
        assert ("account-not-active", gamma) in kinds
        assert ("inventory-gap", alpha) in kinds
        first_snapshot = summary["snapshot_id"]

    again = run_inventory(spec)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert again["snapshot_id"] != first_snapshot
        assert (
            store.snapshots.latest_snapshot(store.migrations.ensure_migration("wave-1", {})).id
            == again["snapshot_id"]
        )
        # The earlier snapshot stays for comparison.
        assert len(store.snapshots.load_snapshot(first_snapshot)) == 2


def test_an_unreachable_account_fails_the_run_and_the_rest_is_stored(
    organization, tmp_path, monkeypatch
):
    """An outage is not "access denied", and a partial inventory is not a success."""
    from botocore.exceptions import EndpointConnectionError

    from domain.errors import InventoryIncompleteError

    alpha, beta, _ = organization
    original = AwsSessions.for_account

    def refuse(request, **_):
        raise EndpointConnectionError(endpoint_url=request.url)

    def for_account(self, account_id):
        session = original(self, account_id)
        if account_id == beta:
            session._session.register("before-send.iam", refuse, unique_id="outage")
        return session

    monkeypatch.setattr(AwsSessions, "for_account", for_account)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\nprotected_users = ["breakglass-*"]\n'
        "[inventory]\nconcurrency = 2\n[aws]\nmax_attempts = 1\n"
    )

    with pytest.raises(InventoryIncompleteError) as caught:
        run_inventory(spec)

    err = caught.value
    assert err.exit_code != 0
    assert [(f[0], f[1], f[2]) for f in err.failures] == [(beta, "beta", "unreachable")]
    message = str(err)
    assert f"{beta} (beta): unreachable" in message and "what to do:" in message
    assert "access-denied" not in message
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        run = store.runs.get_run(err.run_id)
        assert run.status == "failed" and beta in (run.error or "")
        assert run.summary["accounts_failed"] == [beta]
        inventories = {
            i.account.account_id: i for i in store.snapshots.load_snapshot(err.snapshot_id)
        }
        assert len(inventories[alpha].users) == 4 and inventories[alpha].error is None
        assert "cannot reach the AWS endpoint" in (inventories[beta].error or "")
        # The scope ("*") read no parents; the failed account's was read (a plan that now
        # excludes its OU must see it), the others' were not needed.
        root = AwsSessions(region="us-east-1").management().client("organizations")
        assert inventories[beta].account.parent_id == root.list_roots()["Roots"][0]["Id"]
        assert inventories[alpha].account.parent_id is None
        kinds = {(f.kind, f.account_id) for f in store.snapshots.findings(run_id=err.run_id)}
        assert ("unreachable", beta) in kinds and ("access-denied", beta) not in kinds


def test_an_endpoint_gone_while_the_accounts_are_read_names_each_account(
    organization, tmp_path, monkeypatch
):
    """The organization's own identity is asked before the accounts are read: asked after, an
    endpoint gone meanwhile failed the run with that one call's error, and no account's."""
    import threading

    from botocore.exceptions import EndpointConnectionError

    from domain.errors import AwsUnreachableError, InventoryIncompleteError

    alpha, beta, _ = organization
    gone = threading.Event()
    original, identity = AwsSessions.for_account, AwsSessions.management_account_id

    def refuse(request, **_):
        raise EndpointConnectionError(endpoint_url=request.url)

    def for_account(self, account_id):
        gone.set()  # from the first account read on, nothing answers
        session = original(self, account_id)
        session._session.register("before-send", refuse, unique_id="outage")
        return session

    def management_account_id(self):
        if gone.is_set():
            raise AwsUnreachableError("cannot reach the AWS endpoint", operation="sts")
        return identity(self)

    monkeypatch.setattr(AwsSessions, "for_account", for_account)
    monkeypatch.setattr(AwsSessions, "management_account_id", management_account_id)
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text() + "[aws]\nmax_attempts = 1\n")

    with pytest.raises(InventoryIncompleteError) as caught:
        run_inventory(spec)

    assert sorted(f[0] for f in caught.value.failures) == sorted([alpha, beta])
    assert all(f[2] == "unreachable" for f in caught.value.failures)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert store.runs.get_run(caught.value.run_id).status == "failed"
