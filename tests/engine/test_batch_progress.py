"""A parent on a pool reports its batches' progress: what a batch's own process reports on a
worker reaches no one (found by an operator: a completed inventory on a pool showed "0 of 12
accounts done" in its progress artifact and in the CLI's bar)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from console.progress import ProgressArtifact
from domain.progress import listening
from domain.spec import MigrationSpec
from engine import apply_batch, batches
from engine.batches import BatchOutcome, dispatch
from flows import inventory
from state import Store

ACCOUNTS = ["111111111111", "222222222222", "333333333333", "444444444444", "555555555555"]


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as opened:
        yield opened


def _workers_record(store: Store, results: dict[str, dict[str, Any]], monkeypatch) -> list:
    """Batch runs as a worker runs them: each records its accounts' results in the state DB
    and emits nothing here. Returns the batches in the order they ended (last one first)."""
    ended: list[list[str]] = []

    def run_batch(spec, work, step, params, accounts, name, key, here) -> BatchOutcome:
        if accounts[0] == ACCOUNTS[0]:
            batches.time.sleep(0.3)  # the first batch ends last
        for account in accounts:
            if account in results:  # one account's batch crashed before it reported
                store.account_results.save(work, account, results[account], None)
        ended.append(accounts)
        return BatchOutcome(accounts, name, "COMPLETED", "")

    monkeypatch.setattr(batches, "_run_batch", run_batch)
    return ended


def test_an_inventory_on_a_pool_counts_each_batch_s_accounts_as_the_batch_ends(store, monkeypatch):
    results = {a: {"users": n, "error": None} for n, a in enumerate(ACCOUNTS[:4])}
    results[ACCOUNTS[1]]["error"] = "cannot assume role"
    ended = _workers_record(store, results, monkeypatch)
    spec = MigrationSpec(name="m", prefect={"accounts_per_run": 2})
    artifact = ProgressArtifact("k", "inventory of m", inventory.INVENTORY_PROGRESS)
    seen: list[tuple[str, dict[str, Any]]] = []

    def on_event(event: str, data: dict[str, Any]) -> None:
        seen.append((event, data))
        artifact.on_event(event, data)

    artifact.on_event("scope", {"accounts": len(ACCOUNTS)})
    with listening(on_event):
        got, missing = dispatch(
            spec, store, work="inventory:1", step="inventory", params={}, accounts=ACCOUNTS,
            label=str, here=lambda batch: None, on_batch_done=inventory._batch_progress,
        )  # fmt: skip

    assert got == results and set(missing) == {ACCOUNTS[4]}
    # Reported batch by batch, as each ended (the first batch ended last).
    assert ended[-1] == ACCOUNTS[:2]
    order = [data["account_id"] for _, data in seen]
    assert order == [*ACCOUNTS[2:4], *ACCOUNTS[:2]]
    users = {data["account_id"]: (data["users"], data["status"]) for _, data in seen}
    assert users == {
        ACCOUNTS[0]: (0, "done"),
        ACCOUNTS[1]: (1, "failed"),
        ACCOUNTS[2]: (2, "done"),
        ACCOUNTS[3]: (3, "done"),
    }
    assert artifact.description() == "inventory of m: 3 done, 1 failed, 1 pending of 5 accounts"


def test_an_apply_on_a_pool_counts_each_action_its_batches_ended(monkeypatch):
    seen: list[tuple[str, str, str | None]] = []

    def on_action_done(action: str, status: str, error: str | None) -> None:
        seen.append((action, status, error))

    monkeypatch.setattr(apply_batch, "on_action_done", on_action_done)
    apply_batch._batch_progress(
        {
            "111111111111": {
                "account_id": "111111111111",
                "statuses": {"a1": "succeeded", "a2": "failed", "a3": "pending", "a4": "adopted"},
                "errors": ["a2: AccessDenied: not allowed"],
            },
            "222222222222": {"account_id": "222222222222", "statuses": {"b1": "blocked"}},
        }
    )

    # Ended actions only: pending and blocked ones are still to do.
    assert seen == [
        ("a1", "succeeded", None),
        ("a2", "failed", "a2: AccessDenied: not allowed"),
        ("a4", "adopted", None),
    ]


def test_progress_of_a_batch_never_stops_the_run(store, monkeypatch):
    _workers_record(store, {a: {"users": 1, "error": None} for a in ACCOUNTS}, monkeypatch)

    def broken(results: dict[str, dict[str, Any]]) -> None:
        raise RuntimeError("the progress artifact's API is down")

    got, missing = dispatch(
        MigrationSpec(name="m"), store, work="inventory:2", step="inventory", params={},
        accounts=ACCOUNTS, label=str, here=lambda batch: None, on_batch_done=broken,
    )  # fmt: skip
    assert set(got) == set(ACCOUNTS) and missing == {}
