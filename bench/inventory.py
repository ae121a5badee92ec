"""Inventory of a seeded sandbox organization: calls per account and wall time vs. concurrency."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from typing import Any

import boto3

from bench.harness import bench_workdir, member_iam

BENCH_SPEC = """name = "bench"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = {concurrency}
[aws]
rate_limits = {{ iam = {iam_rate} }}
"""


def _add_groups_and_policies(url: str, account_id: str, count: int) -> None:
    """Give one account many more groups and policies, attached to its users."""
    iam = member_iam(url, account_id)
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    document = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}],
        }
    )
    for n in range(count):
        arn = iam.create_policy(PolicyName=f"bench-extra-{n}", PolicyDocument=document)["Policy"][
            "Arn"
        ]
        iam.create_group(GroupName=f"bench-group-{n}")
        iam.attach_group_policy(GroupName=f"bench-group-{n}", PolicyArn=arn)
        for user in users[n % len(users) :: 7]:
            iam.add_user_to_group(GroupName=f"bench-group-{n}", UserName=user)
        iam.attach_user_policy(UserName=users[n % len(users)], PolicyArn=arn)


def _shape(url: str, account_id: str) -> dict[str, int]:
    iam = member_iam(url, account_id)
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    keys = sum(len(iam.list_access_keys(UserName=u)["AccessKeyMetadata"]) for u in users)
    return {
        "users": len(users),
        "keys": keys,
        "groups": len(iam.list_groups()["Groups"]),
        "local_policies": len(iam.list_policies(Scope="Local")["Policies"]),
    }


def run(args: argparse.Namespace) -> None:
    from flows.inventory import run_inventory
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir = bench_workdir("iamc-bench-")
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=args.seed)
        os.environ.update(sandbox.env())
        started = time.monotonic()
        manifest = seed_organization(
            boto3.Session(),
            accounts=args.accounts,
            users_per_account=args.users,
            seed=args.seed,
            endpoint_url=sandbox.url,
        )
        seeding = time.monotonic() - started
        print(f"seeded {args.accounts} accounts x {args.users} users in {seeding:.1f} s")
        control = sandbox.middleware
        assert control is not None
        active = [a.account_id for a in manifest.accounts if a.status == "ACTIVE" and a.users]

        def run(concurrency: int, tag: str) -> dict[str, Any]:
            for stale in workdir.glob("state.db*"):
                stale.unlink()
            spec = workdir / f"spec-{tag}.toml"
            spec.write_text(BENCH_SPEC.format(concurrency=concurrency, iam_rate=args.iam_rate))
            control.strictness.update({"latency_ms": args.latency_ms})
            control.recorder.reset()
            t0 = time.monotonic()
            summary = run_inventory(spec)
            wall = time.monotonic() - t0
            control.strictness.update({"latency_ms": 0})
            calls = control.recorder.snapshot()
            print(
                f"[{tag}] concurrency {concurrency}, latency {args.latency_ms} ms: "
                f"{summary['accounts']} accounts, {summary['users']} users, "
                f"{calls['total']} calls, wall {wall:.1f} s"
            )
            return {"wall": wall, "calls": calls}

        results = {c: run(c, f"c{c}") for c in args.concurrency}
        first = results[args.concurrency[-1]]["calls"]["by_account"]
        per_op: Counter[str] = Counter()
        for account in active:
            per_op.update(first.get(account, {}))
        print(f"\nIAM/STS calls per account by operation (mean of {len(active)} accounts):")
        for op, total in sorted(per_op.items()):
            print(f"  {op:45s} {total / len(active):8.1f}")
        totals = [sum(first.get(a, {}).values()) for a in active]
        print(f"  {'total per account':45s} {statistics.mean(totals):8.1f}")

        # Same account, many more groups and policies: the call count must not move.
        probe = active[0]
        before_shape = _shape(sandbox.url, probe)
        before_calls = sum(first.get(probe, {}).values())
        _add_groups_and_policies(sandbox.url, probe, args.extra)
        after_shape = _shape(sandbox.url, probe)
        after = run(args.concurrency[-1], "extra-groups")["calls"]["by_account"].get(probe, {})
        print(f"\naccount {probe}: before {before_shape} -> {before_calls} calls")
        print(f"account {probe}: after  {after_shape} -> {sum(after.values())} calls")
        print("\nper-account calls vs. shape (users, keys -> calls):")
        for account in active[:5]:
            shape = _shape(sandbox.url, account)
            print(f"  {account}: {shape} -> {sum(first.get(account, {}).values())} calls")
