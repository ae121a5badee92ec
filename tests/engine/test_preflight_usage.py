"""stale_targets and the usage read: a newer read with other use stops provisioning only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from domain.plan import Stage
from domain.usage import UsageRead, UserUsage
from engine.preflight import stale_targets
from state import Store

A1 = "111111111111"
WHEN = "2026-11-30T12:00:00Z"


def _read(services: dict[str, str]) -> UsageRead:
    return UsageRead(None, 0, 90, WHEN, {(A1, "ana"): UserUsage(A1, "ana", services)})


def test_a_newer_read_with_other_use_refuses_provision_but_not_disable(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration, "inventory")
        snapshot = store.snapshots.new_snapshot(migration, run)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        planned = _read({"s3": WHEN, "ec2": WHEN})
        for read in (planned, _read({"s3": WHEN})):  # after provisioning: less use seen
            read.snapshot_id = snapshot
            usage_run = store.runs.start_run(migration, "usage")
            store.usage.save_read(migration, usage_run, read)
            store.runs.finish_run(usage_run, "succeeded")
        section = {"read_at": WHEN, "usage_hash": planned.content_hash()}
        plan = SimpleNamespace(
            inventory_snapshot_id=snapshot,
            users=[],
            actions=[],
            least_privilege=section,
            settings={},
        )
        session = SimpleNamespace(client=lambda *_a, **_k: None)  # no principal is asked about

        def stale(*stages: Stage) -> list[str]:
            return stale_targets(store, migration, plan, session, "d-1", frozenset(stages))

        [problem] = stale(Stage.PROVISION)
        assert "newer usage read" in problem
        assert stale(Stage.DISABLE) == [] and stale(Stage.DELETE) == []
        assert stale(Stage.REPLACE) == []
