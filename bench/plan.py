"""Plan computation for a synthetic 10,000-user inventory built directly in the store."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import bench_workdir


def synthetic_org(accounts: int, users: int) -> tuple[list[Any], list[Any], list[Any]]:
    """An organization shaped like a real one: a few access patterns shared by many people."""
    from domain.records import (
        AccessKey,
        Account,
        AccountInventory,
        AttachedPolicy,
        IdentityUser,
        InlinePolicy,
        ManagedPolicy,
        MatchStatus,
        User,
        UserClass,
        UserMapping,
    )

    aws = [
        "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "arn:aws:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/AmazonS3FullAccess",
        "arn:aws:iam::aws:policy/AmazonEC2FullAccess",
    ]
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    now = datetime.now(UTC)
    inventories, mappings, identities = [], [], {}
    for a in range(accounts):
        account_id = f"{100000000000 + a}"
        people = []
        for u in range(users):
            person = (a * 7 + u) % (accounts * users // 3 or 1)
            login = f"person{person:05d}"
            identities.setdefault(login, IdentityUser(f"id-{person:05d}", f"{login}@example.com"))
            pattern = (a + u) % 6
            klass = [UserClass.HUMAN] * 4 + [UserClass.WORKLOAD, UserClass.UNUSED]
            user = User(
                name=login,
                user_id=f"AIDA{a:05d}{u:05d}",
                arn=f"arn:aws:iam::{account_id}:user/{login}",
                created=now - timedelta(days=400),
                password_enabled=pattern < 4,
                access_keys=[AccessKey(f"AKIA{a:06d}{u:06d}XX", "Active")],
                attached_policies=[
                    AttachedPolicy(aws[pattern % 4], aws[pattern % 4].rsplit("/", 1)[-1])
                ],
                inline_policies=[InlinePolicy("extra", document)] if pattern == 3 else [],
                user_class=klass[pattern],
                class_reason="synthetic",
            )
            people.append(user)
            mappings.append(
                UserMapping(
                    account_id,
                    login,
                    MatchStatus.MATCHED,
                    "username",
                    identities[login].user_id,
                    identities[login].user_name,
                )
            )
        inventories.append(
            AccountInventory(
                account=Account(account_id, f"acct-{a}"),
                users=people,
                managed_policies=[
                    ManagedPolicy(arn, arn.rsplit("/", 1)[-1], aws_managed=True, document=document)
                    for arn in aws
                ],
            )
        )
    return inventories, mappings, list(identities.values())


def run(args: argparse.Namespace) -> None:
    """Plan computation for a synthetic inventory built directly in the store."""
    import resource

    from flows.plan import plan_flow
    from state import Store

    workdir = bench_workdir("iamc-bench-plan-")
    spec = workdir / "spec.toml"
    spec.write_text('name = "bench-plan"\nstate = "sqlite:///state.db"\n')
    t0 = time.monotonic()
    inventories, mappings, identities = synthetic_org(args.accounts, args.users)
    with Store.open(f"sqlite:///{workdir / 'state.db'}") as store:
        migration = store.ensure_migration("bench-plan", {})
        run = store.start_run(migration, "inventory")
        snapshot = store.new_snapshot(migration, run)
        for inventory in inventories:
            store.save_account_inventory(snapshot, inventory)
        store.complete_snapshot(snapshot)
        store.finish_run(run, "succeeded")
        mapping_run = store.start_run(migration, "mapping")
        store.save_mapping(mapping_run, snapshot, identities, [], mappings, [])
        store.finish_run(mapping_run, "succeeded")
    built = time.monotonic() - t0
    print(f"built {args.accounts} accounts x {args.users} users in the store in {built:.1f} s")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.monotonic()
    result = plan_flow(str(spec), str(workdir / "out"))
    wall = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    actions = sum(result["actions"].values())
    print(
        f"plan {result['plan_id']}: {result['users']} users, {result['permission_sets']} "
        f"permission sets, {result['assignments']} assignments, {actions} actions"
    )
    print(f"plan flow wall time {wall:.1f} s (includes Prefect's ephemeral API start)")
    print(f"process max RSS {rss:.0f} MiB (before the flow: {rss_before:.0f} MiB)")
    # The same again, warm: what re-planning costs once Prefect is up.
    t0 = time.monotonic()
    again = plan_flow(str(spec), str(workdir / "out2"))
    warm = time.monotonic() - t0
    print(f"re-plan (warm) {warm:.1f} s; same hash: {again['hash'] == result['hash']}")
    sizes = {k: Path(v).stat().st_size for k, v in result["files"].items()}
    print(f"files: { {k: f'{v / 2**20:.1f} MiB' for k, v in sizes.items()} }")
