"""Accounts spread over a work pool: batch sizes, the borrowed lease, account results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.batches import batch_label, split, unit_name
from engine.lease import LeaseLost, borrowed_lease, locked_stages
from state import Store
from tests.state.test_locks import STALE, a_plan


@pytest.mark.parametrize(
    ("accounts", "per_run", "sizes"),
    [(10, 10, [10]), (11, 10, [6, 5]), (25, 10, [9, 9, 7]), (3, 1, [1, 1, 1]), (0, 5, [])],
)
def test_batches_are_as_even_as_their_limit_allows(accounts: int, per_run: int, sizes) -> None:
    names = [f"{n:012d}" for n in range(accounts)]
    batches = split(names, per_run)
    assert [len(b) for b in batches] == sizes
    assert [a for b in batches for a in b] == names  # every account once, in order


def test_a_batch_acts_only_while_its_parent_holds_the_lease(store_url: str) -> None:
    with Store.open(store_url) as store:
        plan = a_plan(store)
        for stage in locked_stages("disable"):
            assert (
                store.leases.acquire_stage_lock(plan, stage, "parent:1", stale_after=STALE) is None
            )
        guard = borrowed_lease(store, plan, "disable", "parent:1")
        guard()  # held and fresh
        # Another run takes one of the group's leases over: the batch stops.
        for stage in locked_stages("disable"):
            store.leases.release_stage_lock(plan, stage, "parent:1")
        with pytest.raises(LeaseLost, match="no longer holds it"):
            guard()


def test_a_batch_stops_once_its_parent_falls_silent(store_url: str) -> None:
    with Store.open(store_url) as store:
        plan = a_plan(store)
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        store.leases.acquire_stage_lock(
            plan, "provision", "parent:1", stale_after=STALE, now=long_ago
        )
        with pytest.raises(LeaseLost, match="has not renewed it"):
            borrowed_lease(store, plan, "provision", "parent:1")()
        # A guard of another holder (an earlier parent attempt) stops at once.
        store.leases.heartbeat_stage_lock(plan, "provision", "parent:1")
        borrowed_lease(store, plan, "provision", "parent:1")()
        with pytest.raises(LeaseLost):
            borrowed_lease(store, plan, "provision", "parent:0")()


def test_an_account_result_is_replaced_by_a_later_attempt(store_url: str) -> None:
    with Store.open(store_url) as store:
        results = store.account_results
        results.save("apply:7:provision", "111111111111", {"statuses": {"a": "failed"}}, "run-1")
        results.save("apply:7:provision", "222222222222", {"statuses": {}}, None)
        results.save("apply:7:provision", "111111111111", {"statuses": {"a": "succeeded"}}, "run-2")
        results.save("apply:8:provision", "111111111111", {"statuses": {"b": "succeeded"}}, None)
        got = results.results("apply:7:provision")
        assert got == {
            "111111111111": {"statuses": {"a": "succeeded"}},
            "222222222222": {"statuses": {}},
        }
        results.forget("apply:7:provision", ["111111111111"])
        assert set(results.results("apply:7:provision")) == {"222222222222"}
        assert results.results("apply:8:provision", ["111111111111"]) == {
            "111111111111": {"statuses": {"b": "succeeded"}}
        }


def test_every_batch_step_names_a_function_a_worker_can_import() -> None:
    from flows.account_batch import STEPS, _step

    assert set(STEPS) == {"apply", "inventory", "key-scan", "workloads", "verify"}
    for name in STEPS:
        assert callable(_step(name)), name


def test_a_batch_and_its_units_are_named_as_an_operator_reads_them() -> None:
    assert unit_name("111111111111") == "account 111111111111"
    # A key scan's code path: the spec's [scan] paths entry, counted from 1, not "account path:0".
    assert unit_name("path:0") == "[scan] paths entry 1"
    assert batch_label("inventory", ["111111111111"]) == "inventory 111111111111"
    assert batch_label("inventory", ["1", "2", "3"]) == "inventory 3 accounts 1..3"
