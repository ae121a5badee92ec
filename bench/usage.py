"""Reading usage at scale: 1,000 users in 20 accounts, within IAM's and CloudTrail's rates.

Seeds ``accounts`` x ``users`` IAM users (a key and an inline policy each; every fifth plays a
few calls of its own), takes the inventory, then runs the usage flow (one task per account,
``--concurrency`` accounts at once) against the in-process sandbox with IAM throttled per
account and CloudTrail's LookupEvents at 2/s per account and region, as AWS does. Reports the
wall time; per account, the calls per second of IAM and CloudTrail (mean over the run and the
busiest second, beside the client's limits: 10/s and 2/s by default); the throttled attempts;
and the latency bound the rates impose: per account max(IAM calls / IAM rate, LookupEvents /
CloudTrail rate) (the two run side by side), over the accounts ``--concurrency`` at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import boto3

from bench.harness import bench_workdir, goal, member_iam, run_flows_as_the_cli_does

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "ec2:Describe*"], "Resource": "*"}],
}
# What the playing users do: (service, operation), backdated a few days.
PLAYED = (("s3", "ListBuckets"), ("ec2", "DescribeInstances"))
GOAL_RATIO = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--users", type=int, default=50, help="per account")
    parser.add_argument(
        "--concurrency", type=int, default=20, help="accounts read at once (flow task runner)"
    )
    parser.add_argument(
        "--iam-rate", type=float, default=10.0, help="client IAM limit, calls/s per account"
    )
    parser.add_argument(
        "--sandbox-iam-rate", type=float, default=15.0, help="sandbox IAM rate per account"
    )
    parser.add_argument(
        "--cloudtrail-rate", type=float, default=2.0, help="LookupEvents/s per account"
    )


def _org(url: str, accounts: int) -> list[str]:
    org = boto3.client("organizations", endpoint_url=url)
    org.create_organization(FeatureSet="ALL")
    ids = []
    for n in range(accounts):
        request = org.create_account(AccountName=f"usage-{n:03d}", Email=f"u{n}@example.com")
        ids.append(
            org.describe_create_account_status(
                CreateAccountRequestId=request["CreateAccountStatus"]["Id"]
            )["CreateAccountStatus"]["AccountId"]
        )
    return ids


def _seed(url: str, account_id: str, users: int) -> list[str]:
    iam = member_iam(url, account_id)
    names = []
    for n in range(users):
        name = f"person-{n:03d}"
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="work", PolicyDocument=json.dumps(POLICY))
        iam.create_access_key(UserName=name)
        names.append(name)
    return names


class _Timeline:
    """When the sandbox admitted each call (it runs in this process): per account and family."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamps: dict[tuple[str, str], list[float]] = defaultdict(list)

    def wrap(self, recorder: Any) -> None:
        record = recorder.record

        def recording(key: str, account_id: str, *, throttled: bool = False) -> None:
            if not throttled:
                with self.lock:
                    self.stamps[(account_id, key.split(":", 1)[0])].append(time.monotonic())
            record(key, account_id, throttled=throttled)

        recorder.record = recording

    def busiest_second(self, family: str) -> tuple[int, str]:
        """The most calls of ``family`` any account made within one second, and which."""
        best = (0, "-")
        for (account_id, fam), stamps in self.stamps.items():
            if fam != family:
                continue
            stamps = sorted(stamps)
            start = 0
            for end, when in enumerate(stamps):
                while when - stamps[start] >= 1.0:
                    start += 1
                best = max(best, (end - start + 1, account_id))
        return best


def run(args: argparse.Namespace) -> None:
    """Read the usage of ``accounts`` x ``users`` IAM users on the throttled sandbox."""
    from prefect.task_runners import ThreadPoolTaskRunner

    import sandbox.strict as strict
    from flows.inventory import run_inventory
    from sandbox.control import SandboxControl
    from sandbox.server import Sandbox

    workdir = bench_workdir("iamc-bench-usage-")
    run_flows_as_the_cli_does("flows.inventory", "flows.usage")
    from flows.usage import usage_flow

    spec = workdir / "spec.toml"
    spec.write_text(
        f'name = "bench-usage"\nstate = "sqlite:///{workdir / "state.db"}"\n'
        f"[inventory]\nconcurrency = {min(args.accounts, 16)}\n"
        f"[aws]\nrate_limits = {{ iam = {args.iam_rate:g}, "
        f"cloudtrail = {args.cloudtrail_rate:g} }}\n"
    )
    # IAM throttles per account: the sandbox keeps one bucket per account for it too.
    strict._PER_ACCOUNT_REGION = frozenset({*strict._PER_ACCOUNT_REGION, "iam"})
    users = args.accounts * args.users
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=17)
        os.environ.update(sandbox.env())
        middleware = sandbox.middleware
        assert middleware is not None
        t0 = time.monotonic()
        accounts = _org(sandbox.url, args.accounts)
        control = SandboxControl(sandbox.url, timeout=120)
        players = 0
        for account_id in accounts:
            for name in _seed(sandbox.url, account_id, args.users)[::5]:
                control.play_user_usage(account_id, name, list(PLAYED), days_ago=3)
                players += 1
        print(
            f"set up {len(accounts)} accounts x {args.users} users, {players} of them played "
            f"{len(PLAYED)} calls each ({time.monotonic() - t0:.1f} s)"
        )
        t0 = time.monotonic()
        run_inventory(spec)
        print(f"inventory taken ({time.monotonic() - t0:.1f} s; not counted)")

        middleware.strictness.update(
            {"throttle": {"iam": args.sandbox_iam_rate, "cloudtrail": args.cloudtrail_rate}}
        )
        print(
            f"sandbox: IAM throttled at {args.sandbox_iam_rate:g}/s per account, CloudTrail "
            f"at {args.cloudtrail_rate:g}/s per account and region; client limits iam "
            f"{args.iam_rate:g}/s, cloudtrail {args.cloudtrail_rate:g}/s per account; "
            f"{args.concurrency} accounts at once"
        )
        middleware.recorder.reset()
        timeline = _Timeline()
        timeline.wrap(middleware.recorder)
        flow = usage_flow.with_options(
            task_runner=ThreadPoolTaskRunner(max_workers=args.concurrency)
        )
        started = time.monotonic()
        result = flow(str(spec))
        wall = time.monotonic() - started
        summary = result if isinstance(result, dict) else result.data
        _report(args, wall, middleware.recorder.snapshot(), timeline, summary, users, players)


def _report(
    args: argparse.Namespace,
    wall: float,
    calls: dict[str, Any],
    timeline: _Timeline,
    summary: dict[str, Any],
    users: int,
    players: int,
) -> None:
    counted = Counter(
        {k: v for k, v in calls["calls"].items() if k.startswith(("iam:", "cloudtrail:"))}
    )
    print(f"\n== usage: {users} users in {args.accounts} accounts, wall {wall:.1f} s")
    print(
        f"  read {summary['users']} user(s), {summary['unread']} not read; "
        f"read id {summary['read_id']}"
    )
    print(f"  {'operation':48s} {'calls':>7s} {'per user':>9s}")
    for key, count in sorted(counted.items(), key=lambda kv: -kv[1]):
        print(f"  {key:48s} {count:7d} {count / users:9.2f}")
    print(f"  throttled attempts: {calls['throttled_total']} {dict(calls['throttled'])}")
    per_account = []
    for account_id, ops in calls["by_account"].items():
        iam = sum(v for k, v in ops.items() if k.startswith("iam:"))
        trail = sum(v for k, v in ops.items() if k.startswith("cloudtrail:"))
        if iam or trail:
            per_account.append((account_id, iam, trail))
    bounds = [max(i / args.iam_rate, t / args.cloudtrail_rate) for _, i, t in per_account]
    waves = math.ceil(len(per_account) / max(args.concurrency, 1))
    bound = max(max(bounds, default=0.0), sum(bounds) / max(args.concurrency, 1))
    iam_peak, iam_at = timeline.busiest_second("iam")
    ct_peak, ct_at = timeline.busiest_second("cloudtrail")
    mean_iam = sum(i for _, i, _ in per_account) / max(len(per_account), 1) / wall
    mean_ct = sum(t for _, _, t in per_account) / max(len(per_account), 1) / wall
    print(
        f"  per account: IAM {mean_iam:.2f} calls/s over the run, busiest second {iam_peak} "
        f"({iam_at}) vs the limit {args.iam_rate:g}/s; CloudTrail {mean_ct:.2f} calls/s, "
        f"busiest second {ct_peak} ({ct_at}) vs {args.cloudtrail_rate:g}/s"
    )
    busiest = max(per_account, key=lambda a: max(a[1] / args.iam_rate, a[2] / args.cloudtrail_rate))
    print(
        f"  latency bound: per account max(IAM calls / {args.iam_rate:g}/s, LookupEvents / "
        f"{args.cloudtrail_rate:g}/s); busiest {busiest[0]}: {busiest[1]} IAM calls = "
        f"{busiest[1] / args.iam_rate:.1f} s, {busiest[2]} LookupEvents = "
        f"{busiest[2] / args.cloudtrail_rate:.1f} s; {len(per_account)} accounts "
        f"{args.concurrency} at a time ({waves} wave(s)) -> bound {bound:.1f} s"
    )
    print(f"  wall / bound = {wall:.1f} / {bound:.1f} = {wall / bound if bound else 0:.2f}")
    goal(
        f"usage {users} users / {args.accounts} accounts: wall / rate bound",
        wall / bound if bound else float("inf"),
        GOAL_RATIO,
        "x",
        detail=f"{wall:.1f} s vs {bound:.1f} s",
    )
    # Within the rates: the client's limiter keeps every account at or under them (a second
    # window may hold one more call than the rate at its edges: the limiter's buffer).
    goal(
        "usage: busiest IAM second of any account",
        iam_peak,
        args.iam_rate + 1,
        "calls",
        detail=f"client limit {args.iam_rate:g}/s per account",
    )
    goal(
        "usage: busiest CloudTrail second of any account",
        ct_peak,
        args.cloudtrail_rate + 1,
        "calls",
        detail=f"LookupEvents {args.cloudtrail_rate:g}/s per account and region",
    )
    goal("usage: throttled attempts", calls["throttled_total"], 0, "attempts")
    goal("usage: users not read", summary["unread"], 0, "users")
    print(f"  ({players} users played calls of their own; the rest used nothing)")
