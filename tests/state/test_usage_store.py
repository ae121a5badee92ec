"""store.usage: a read is stored whole and the newest comes back, with its id and hash."""

from __future__ import annotations

from domain.usage import UsageRead, UserUsage
from state import Store

A, B = "111111111111", "222222222222"


def _read(snapshot_id: int, actions: dict[str, str]) -> UsageRead:
    alice = UserUsage(
        A,
        "alice",
        services={"s3": "2026-12-01T10:00:00Z"},
        actions=actions,
        action_level=frozenset({"s3", "ec2"}),
    )
    return UsageRead(
        id=None,
        snapshot_id=snapshot_id,
        window_days=90,
        read_at="2026-12-02T00:00:00Z",
        users={alice.key: alice, (A, "bob"): UserUsage(A, "bob")},
        unread={(B, "*"): "AssumeRole refused", (A, "carol"): "job FAILED"},
    )


def test_save_and_latest(store_url):
    with Store.open(store_url) as store:
        migration_id = store.migrations.ensure_migration("m", {})
        assert store.usage.latest(migration_id) is None
        run_id = store.runs.start_run(migration_id, "inventory")
        snapshot_id = store.snapshots.new_snapshot(migration_id, run_id)
        first = _read(snapshot_id, {"s3:ListAllMyBuckets": "2026-12-01T10:00:00Z"})
        first_id = store.usage.save_read(migration_id, run_id, first)
        assert first.id == first_id
        second = _read(snapshot_id, {"s3:CreateBucket": "2026-12-01T11:00:00Z"})
        second_id = store.usage.save_read(migration_id, run_id, second)
        latest = store.usage.latest(migration_id)
        assert latest is not None and latest.id == second_id > first_id
        assert latest.users == second.users
        assert latest.unread == second.unread
        assert latest.read_at == "2026-12-02T00:00:00Z"
        assert latest.content_hash() == second.content_hash() != first.content_hash()
        assert latest.known(B, "anyone") is None and latest.known(A, "carol") is None
        assert latest.known(A, "bob") == UserUsage(A, "bob")
        assert store.usage.load(first_id).users == first.users  # type: ignore[union-attr]
        other = store.migrations.ensure_migration("other", {})
        assert store.usage.latest(other) is None
