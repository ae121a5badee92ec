"""The plan flow with a usage read: trim mode narrows the sets and the plan shows it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from domain.records import (
    Account,
    AccountInventory,
    AttachedPolicy,
    IdentityUser,
    ManagedPolicy,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.usage import UsageRead, UserUsage
from flows.plan import plan_flow
from state import Store

A1 = "111111111111"
S3 = "arn:aws:iam::aws:policy/AmazonS3FullAccess"
EC2 = "arn:aws:iam::aws:policy/AmazonEC2FullAccess"
# Recent: a trim-mode plan refuses a read older than a week (usage-read-old).
WHEN = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _doc(action: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action}]}


def _seed(url: str) -> None:
    users = [
        User(
            name=name,
            user_id=f"AIDA{name.upper()}",
            arn=f"arn:aws:iam::{A1}:user/{name}",
            created=datetime(2025, 1, 1, tzinfo=UTC),
            password_enabled=True,
            attached_policies=[AttachedPolicy(a, a.rsplit("/", 1)[-1]) for a in (S3, EC2)],
            user_class=UserClass.HUMAN,
            class_reason="console password",
        )
        for name in ("ana", "bo")
    ]
    policies = [
        ManagedPolicy(S3, "AmazonS3FullAccess", aws_managed=True, document=_doc("s3:*")),
        ManagedPolicy(EC2, "AmazonEC2FullAccess", aws_managed=True, document=_doc("ec2:*")),
    ]
    with Store.open(url) as store:
        migration = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration, "inventory")
        snapshot = store.snapshots.new_snapshot(migration, run)
        store.snapshots.save_account_inventory(
            snapshot, AccountInventory(Account(A1, "alpha"), users, managed_policies=policies)
        )
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        mapping_run = store.runs.start_run(migration, "mapping")
        identities = [IdentityUser(f"id-{u.name}", f"{u.name}@example.com") for u in users]
        mappings = [
            UserMapping(A1, u.name, MatchStatus.MATCHED, "username", i.user_id, i.user_name)
            for u, i in zip(users, identities, strict=True)
        ]
        store.identity.save_mapping(mapping_run, snapshot, identities, [], mappings, [])
        store.runs.finish_run(mapping_run, "succeeded")


def _save_read(url: str) -> UsageRead:
    """The read as 'iamc usage' stores it: the latest read, the one the plan relies on."""
    usage = UsageRead(
        id=None,
        snapshot_id=1,
        window_days=90,
        read_at=WHEN,
        users={(A1, "ana"): UserUsage(A1, "ana", {"s3": WHEN})},
        unread={(A1, "bo"): "GenerateServiceLastAccessedDetails job FAILED"},
    )
    with Store.open(url) as store:
        migration = store.migrations.find_migration("wave-1")
        run = store.runs.start_run(migration, "usage")
        store.usage.save_read(migration, run, usage)
        store.runs.finish_run(run, "succeeded")
    return usage


def test_trim_mode_plan_narrows_sets_lists_losses_and_who_was_not_read(tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        '[least_privilege]\nmode = "trim"\nwindow_days = 30\n'
    )
    url = f"sqlite:///{tmp_path / 'state.db'}"
    _seed(url)
    usage_read = _save_read(url)
    summary = plan_flow(str(spec))
    # ana used S3 only: AmazonEC2FullAccess (no ec2 used) dropped, AmazonS3FullAccess kept
    # whole (all it grants was used); bo unread, kept whole: two sets.
    assert summary["permission_sets"] == 2
    content = json.loads(Path(summary["files"]["json"]).read_text())
    section = content["least_privilege"]
    assert content["usage_read_id"] == usage_read.id and section["window_days"] == 30
    assert section["usage_hash"] == usage_read.content_hash()
    sets = {tuple(d["aws_managed_policy_arns"]) for d in content["permission_sets"]}
    assert sets == {(S3,), (EC2, S3)}
    [loss] = section["losses"]
    assert (loss["user"], loss["policies_dropped"]) == ("ana", ["AmazonEC2FullAccess"])
    assert [u["holder"] for u in section["unread"]] == ["user bo"]
    markdown = Path(summary["files"]["markdown"]).read_text()
    assert "## Least privilege" in markdown and "### What each person loses" in markdown
    assert f"usage read {usage_read.id}" in markdown
    assert not [f for f in content["findings"] if f["kind"].startswith("usage")]
