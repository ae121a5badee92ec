"""`make bench`: scale runs of the runbook's steps on the sandbox, reported as figures, not tests.

python -m sandbox.bench inventory --accounts 20 --users 50 --latency-ms 20 --concurrency 1 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

BENCH_SPEC = """name = "bench"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = {concurrency}
[aws]
rate_limits = {{ iam = {iam_rate} }}
"""


def _member_iam(url: str, account_id: str) -> Any:
    sts = boto3.client("sts", endpoint_url=url)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="bench",
    )["Credentials"]
    return boto3.client(
        "iam",
        endpoint_url=url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _add_groups_and_policies(url: str, account_id: str, count: int) -> None:
    """Give one account many more groups and policies, attached to its users."""
    iam = _member_iam(url, account_id)
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
    iam = _member_iam(url, account_id)
    users = [u["UserName"] for u in iam.list_users()["Users"]]
    keys = sum(len(iam.list_access_keys(UserName=u)["AccessKeyMetadata"]) for u in users)
    return {
        "users": len(users),
        "keys": keys,
        "groups": len(iam.list_groups()["Groups"]),
        "local_policies": len(iam.list_policies(Scope="Local")["Policies"]),
    }


def bench_inventory(args: argparse.Namespace) -> None:
    from flows.inventory import run_inventory
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir = Path(tempfile.mkdtemp(prefix="iamc-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
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


def _synthetic_org(accounts: int, users: int) -> tuple[list[Any], list[Any], list[Any]]:
    """An organization shaped like a real one: a few access patterns shared by many people."""
    from iamc.records import (
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


def bench_plan(args: argparse.Namespace) -> None:
    """Plan computation for a synthetic inventory built directly in the store."""
    import resource

    from flows.plan import plan_flow
    from state import Store

    workdir = Path(tempfile.mkdtemp(prefix="iamc-bench-plan-"))
    os.environ.setdefault("PREFECT_HOME", str(workdir / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    spec = workdir / "spec.toml"
    spec.write_text('name = "bench-plan"\nstate = "sqlite:///state.db"\n')
    t0 = time.monotonic()
    inventories, mappings, identities = _synthetic_org(args.accounts, args.users)
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bench", description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    inventory = sub.add_parser("inventory", help="inventory of a seeded organization")
    inventory.add_argument("--accounts", type=int, default=20)
    inventory.add_argument("--users", type=int, default=50)
    inventory.add_argument("--seed", type=int, default=7)
    inventory.add_argument("--latency-ms", type=int, default=20)
    inventory.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    inventory.add_argument(
        "--iam-rate", type=float, default=100.0, help="client limit, calls/s per account"
    )
    inventory.add_argument(
        "--extra", type=int, default=30, help="groups+policies added to one account"
    )
    plan = sub.add_parser("plan", help="plan computation for a synthetic inventory in the store")
    plan.add_argument("--accounts", type=int, default=500)
    plan.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    if args.bench == "inventory":
        bench_inventory(args)
    elif args.bench == "plan":
        bench_plan(args)


if __name__ == "__main__":
    main()
