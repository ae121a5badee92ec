"""store.workloads: the latest completed run's placements, unread accounts kept, first role use."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.workloads import Confidence, KeyUsage, Placement, Runtime
from state import Store

A, B = "111111111111", "222222222222"
KEY = "AKIAYVP4CIPPH3XKQ7ZA"


def _placement(account: str, user: str, runtime: Runtime, role_used: datetime | None = None):
    return Placement(
        account,
        user,
        runtime,
        Confidence.HIGH,
        evidence=["exec-env/AWS_Lambda_python3.12 on 3 of 3 calls, last 2026-12-01"],
        keys=[
            KeyUsage(
                KEY,
                "Active",
                last_used=datetime(2026, 12, 1, tzinfo=UTC),
                events=3,
                calls=["s3:ListBuckets"],
            )
        ],
        non_interactive=True,
        role_first_used=role_used,
    )


def _run(store: Store, migration_id: int, placements, failed=None, status="succeeded") -> int:
    run_id = store.runs.start_run(migration_id, "workloads")
    store.workloads.save_placements(migration_id, run_id, placements)
    store.runs.finish_run(run_id, status, summary={"accounts_failed": failed or {}})
    return run_id


def test_latest_keeps_unread_accounts_and_the_first_role_use(store_url):
    with Store.open(store_url) as store:
        migration_id = store.migrations.ensure_migration("m", {})
        assert store.workloads.latest(migration_id) == {}
        first = datetime(2026, 12, 2, tzinfo=UTC)
        _run(
            store,
            migration_id,
            [_placement(A, "fn", Runtime.LAMBDA, first), _placement(B, "ci", Runtime.ECS)],
        )
        # The next run could not read B, and saw A's role used later: B keeps its earlier row.
        _run(
            store,
            migration_id,
            [_placement(A, "fn", Runtime.LAMBDA, datetime(2026, 12, 5, tzinfo=UTC))],
            failed={B: "AssumeRole refused"},
        )
        _run(store, migration_id, [_placement(A, "fn", Runtime.EC2)], status="failed")
        latest = store.workloads.latest(migration_id)
        assert set(latest) == {(A, "fn"), (B, "ci")}
        fn = latest[(A, "fn")]
        assert fn.runtime == Runtime.LAMBDA  # the failed run does not count
        assert fn.role_first_used == first
        assert fn.keys[0].access_key_id == KEY and fn.keys[0].last_used.tzinfo is not None
        assert fn.non_interactive and fn.evidence[0].startswith("exec-env/AWS_Lambda")
        assert latest[(B, "ci")].runtime == Runtime.ECS


def test_a_later_complete_run_drops_a_user_no_longer_there(store_url):
    with Store.open(store_url) as store:
        migration_id = store.migrations.ensure_migration("m", {})
        _run(store, migration_id, [_placement(A, "fn", Runtime.LAMBDA)])
        _run(store, migration_id, [_placement(A, "other", Runtime.ECS)])
        assert set(store.workloads.latest(migration_id)) == {(A, "other")}
