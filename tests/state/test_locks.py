"""Stage locks: one holder at a time, renewed by heartbeat, taken over when the holder is silent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from state import Store

STALE = timedelta(minutes=2)


def a_plan(store: Store) -> int:
    migration = store.migrations.ensure_migration("wave-1", {})
    run = store.runs.start_run(migration, "plan")
    plan_id, _ = store.plans.save_plan(migration, run, "0" * 64, {"actions": []}, 0)
    return plan_id


def test_one_holder_at_a_time(store_url: str) -> None:
    with Store.open(store_url) as store:
        plan = a_plan(store)
        assert (
            store.leases.acquire_stage_lock(plan, "provision", "host-a:1", stale_after=STALE)
            is None
        )
        store.leases.stage_lock_run(plan, "provision", "host-a:1", 7)
        blocker = store.leases.acquire_stage_lock(plan, "provision", "host-b:2", stale_after=STALE)
        assert blocker is not None and blocker.holder == "host-a:1" and blocker.run_id == 7
        # Re-entrant for its holder; another stage is another lock.
        assert (
            store.leases.acquire_stage_lock(plan, "provision", "host-a:1", stale_after=STALE)
            is None
        )
        assert (
            store.leases.acquire_stage_lock(plan, "disable", "host-b:2", stale_after=STALE) is None
        )
        store.leases.release_stage_lock(plan, "provision", "host-a:1")
        assert (
            store.leases.acquire_stage_lock(plan, "provision", "host-b:2", stale_after=STALE)
            is None
        )


def test_a_silent_holder_is_taken_over_and_learns_it(store_url: str) -> None:
    with Store.open(store_url) as store:
        plan = a_plan(store)
        long_ago = datetime.now(UTC) - timedelta(minutes=10)
        assert (
            store.leases.acquire_stage_lock(
                plan, "provision", "dead:1", stale_after=STALE, now=long_ago
            )
            is None
        )
        assert (
            store.leases.acquire_stage_lock(plan, "provision", "alive:2", stale_after=STALE) is None
        )
        # The presumed-dead holder's heartbeat tells it the lock is gone; its release is a no-op.
        assert store.leases.heartbeat_stage_lock(plan, "provision", "dead:1") is False
        store.leases.release_stage_lock(plan, "provision", "dead:1")
        blocker = store.leases.acquire_stage_lock(plan, "provision", "third:3", stale_after=STALE)
        assert blocker is not None and blocker.holder == "alive:2"
        assert store.leases.heartbeat_stage_lock(plan, "provision", "alive:2") is True
