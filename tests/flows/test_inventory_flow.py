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
        run = store.get_run(summary["run_id"])
        assert run.status == "succeeded" and run.kind == "inventory"
        inventories = {i.account.account_id: i for i in store.load_snapshot(summary["snapshot_id"])}
        assert set(inventories) == {alpha, beta}
        classes = {u.name: u.user_class for u in inventories[alpha].users}
        assert classes == {
            "breakglass-root": UserClass.PROTECTED,
            "jane": UserClass.HUMAN,  # new console user: created days ago counts as activity
            "deployer": UserClass.WORKLOAD,
            "nobody": UserClass.UNUSED,
        }
        kinds = {(f.kind, f.account_id) for f in store.findings(run_id=summary["run_id"])}
        assert ("account-not-active", gamma) in kinds
        assert ("inventory-gap", alpha) in kinds
        first_snapshot = summary["snapshot_id"]

    again = run_inventory(spec)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert again["snapshot_id"] != first_snapshot
        assert (
            store.latest_snapshot(store.ensure_migration("wave-1", {})).id == again["snapshot_id"]
        )
        # The earlier snapshot stays for comparison.
        assert len(store.load_snapshot(first_snapshot)) == 2
