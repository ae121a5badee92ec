"""Inventory of a seeded sandbox organization: wall time vs. the latency bound, attributed.

For each shape (accounts x users per account) a sandbox runs in its own process, as AWS would
be, with a fixed latency per call. The inventory flow runs here, reporting to a local Prefect
server (as CLI commands do). The bound is what the calls cost if nothing but latency mattered:
calls x latency / concurrency. The wall time is split into Prefect's start of the flow run, the
organization walk (scope), the per-account work (assume role, client, authorization details,
credential report wait, per-user reads, save) and the end of the run; the sandbox's own CPU time
(serialized: moto runs under one interpreter lock) says when the sandbox, not our code, is the
limit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import bench_workdir, goal, member_iam, run_flows_as_the_cli_does

BENCH_SPEC = """name = "bench"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = {concurrency}
[aws]
rate_limits = {{ iam = {iam_rate} }}
"""
GOAL_RATIO = 1.5
_URL = re.compile(r"AWS_ENDPOINT_URL=(\S+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shapes", nargs="+", default=["8x25", "20x50"], help="ACCOUNTSxUSERS per account"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8])
    parser.add_argument(
        "--iam-rate", type=float, default=100.0, help="client limit, calls/s per account"
    )
    parser.add_argument(
        "--extra", type=int, default=30, help="groups+policies added to one account (0: skip)"
    )
    parser.add_argument("--runs", type=int, default=2, help="runs of each shape/concurrency")


def _start_sandbox(workdir: Path, accounts: int, users: int, seed: int) -> tuple[Any, str]:
    log_path = workdir / f"sandbox-{accounts}x{users}.log"
    log = log_path.open("w+")
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "iamc.cli", "sandbox", "up", "--port", "0", "--accounts",
         str(accounts), "--users-per-account", str(users), "--seed", str(seed),
         "--samples-dir", str(workdir / "samples")],
        stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            log.seek(0)
            match = _URL.search(log.read())
            if match:
                return process, match.group(1).strip("'")
            if process.poll() is not None:
                raise SystemExit(f"sandbox exited: {log_path.read_text()}")
            time.sleep(0.5)
        raise SystemExit("the sandbox did not start in 900 s")
    except BaseException:  # not started in time, or this process is stopping (SIGTERM)
        process.kill()
        process.wait()
        raise


def sandbox_env(url: str) -> dict[str, str]:
    """What a client needs to talk to a sandbox at ``url`` (moto's placeholder credentials)."""
    from sandbox.server import DUMMY_ACCESS_KEY_ID, DUMMY_SECRET_ACCESS_KEY, REGION

    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


def _process_cpu(pid: int) -> float:
    """User+system CPU seconds of a process so far (Linux /proc), 0.0 where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def _empty_state_db(workdir: Path) -> Path:
    """A migrated, empty state DB, made once in another process, as a migration's first
    ``iamc`` command makes it: each run starts from a copy, as every later command finds its
    DB (creating the schema is a one-off ~0.5 s, printed, not counted)."""
    template = workdir / "state-empty.db"
    if not template.exists():
        started = time.monotonic()
        subprocess.run(  # noqa: S603 - this interpreter, our own module
            [sys.executable, "-c", "import sys\nfrom state.store import Store\n"
             "with Store.open(sys.argv[1]):\n    pass", f"sqlite:///{template}"],
            check=True,
        )  # fmt: skip
        print(f"state DB created in {time.monotonic() - started:.2f} s (once; not counted)")
    return template


def _inventory_once(
    workdir: Path,
    control: Any,
    concurrency: int,
    args: argparse.Namespace,
    tag: str,
    sandbox_pid: int = 0,
) -> dict[str, Any]:
    from domain.progress import listening
    from flows.inventory import run_inventory

    for stale in workdir.glob("state.db*"):
        stale.unlink()
    shutil.copyfile(_empty_state_db(workdir), workdir / "state.db")
    spec = workdir / f"spec-{tag}.toml"
    spec.write_text(BENCH_SPEC.format(concurrency=concurrency, iam_rate=args.iam_rate))
    control.configure(latency_ms=args.latency_ms)
    control.reset_calls()
    marks: dict[str, float] = {}
    accounts: list[dict[str, float]] = []

    def on_event(event: str, data: dict[str, Any]) -> None:
        now = time.perf_counter()
        if event in ("inventory-start", "scope"):
            marks[event] = now
        elif event == "account-done":
            marks["last-account"] = now
            accounts.append(dict(data.get("timings") or {}))

    t0, cpu0, sandbox0 = time.perf_counter(), time.process_time(), _process_cpu(sandbox_pid)
    with listening(on_event):
        summary = run_inventory(spec)
    wall = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    sandbox_cpu = _process_cpu(sandbox_pid) - sandbox0
    calls = control.calls()
    control.configure(latency_ms=0)
    bound = calls["total"] * args.latency_ms / 1000 / concurrency
    start = marks.get("inventory-start", t0)
    scope = marks.get("scope", start)
    last = marks.get("last-account", scope)
    return {
        "tag": tag,
        "concurrency": concurrency,
        "summary": summary,
        "calls": calls,
        "wall": wall,
        "bound": bound,
        "phases": {
            "prefect start (call -> flow body)": start - t0,
            "scope (organization walk)": scope - start,
            "accounts (scope -> last account)": last - scope,
            "end (last account -> return)": t0 + wall - last,
        },
        "accounts": accounts,
        "client_cpu": client_cpu,
        "sandbox_cpu": sandbox_cpu,
        "load": os.getloadavg()[0],
    }


def _report(result: dict[str, Any], latency_ms: int) -> None:
    calls = result["calls"]
    ratio = result["wall"] / result["bound"] if result["bound"] else float("inf")
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    summary = result["summary"]
    print(
        f"[{result['tag']}] {summary['accounts']} accounts, {summary['users']} users, "
        f"concurrency {result['concurrency']}, latency {latency_ms} ms: {calls['total']} calls, "
        f"bound {result['bound']:.2f} s, wall {result['wall']:.2f} s, ratio {ratio:.2f} "
        f"(goal <= {GOAL_RATIO}x): {verdict}"
    )
    goal(
        f"inventory {result['tag']}: wall / latency bound",
        ratio,
        GOAL_RATIO,
        "x",
        detail=f"{result['wall']:.2f} s vs {result['bound']:.2f} s, {calls['total']} calls",
    )
    for phase, seconds in result["phases"].items():
        print(f"    {phase:40s} {seconds:7.2f} s")
    if result["accounts"]:
        keys = sorted({k for a in result["accounts"] for k in a} - {"total"})
        print(f"    per account (mean / max of {len(result['accounts'])}):")
        for key in [*keys, "total"]:
            values = [a.get(key, 0.0) for a in result["accounts"]]
            print(f"      {key:38s} {statistics.mean(values):7.3f} / {max(values):6.3f} s")
    slowest = sorted(calls.get("busy_cpu_by_call", {}).items(), key=lambda kv: -kv[1])[:3]
    mostly = ", ".join(f"{k} {v:.2f}" for k, v in slowest)
    print(
        f"    client (this process): {result['client_cpu']:.2f} s CPU "
        f"({result['client_cpu'] / max(calls['total'], 1) * 1000:.1f} ms a call: botocore, "
        f"Prefect, threads); machine load {result['load']:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"    sandbox: {calls.get('busy_cpu_s', 0.0):.2f} s CPU in moto and our strict layer "
        f"(serialized under one interpreter lock: a floor no client concurrency beats; mostly "
        f"{mostly}); its process {result['sandbox_cpu']:.2f} s CPU with HTTP and threads; "
        f"{calls['total'] * latency_ms / 1000:.1f} s of added latency in all"
    )
    needed = result["client_cpu"] + result["sandbox_cpu"]
    print(
        f"    CPU: client + sandbox {needed:.2f} s for {result['wall']:.2f} s wall; on "
        f"{os.cpu_count()} CPUs at load {result['load']:.1f} that is "
        f"{'the limit' if needed > result['bound'] else 'not the limit'} beside the "
        f"{result['bound']:.2f} s bound"
    )


def run(args: argparse.Namespace) -> None:
    from sandbox.control import SandboxControl

    workdir = bench_workdir("iamc-bench-")
    print("Shared machine: figures are noisy; each shape runs --runs times.")
    os.environ.pop("PREFECT_API_URL", None)
    started = time.monotonic()
    run_flows_as_the_cli_does("flows.inventory")
    print(f"local Prefect server up in {time.monotonic() - started:.1f} s (once; not counted)")
    for shape in args.shapes:
        accounts, users = (int(n) for n in shape.lower().split("x"))
        started = time.monotonic()
        process, url = _start_sandbox(workdir, accounts, users, args.seed)
        try:
            os.environ.update(sandbox_env(url))
            print(f"\n== {shape}: sandbox seeded in {time.monotonic() - started:.1f} s")
            _run_shape(workdir, SandboxControl(url, timeout=60), url, args, shape, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)


def _run_shape(
    workdir: Path, control: Any, url: str, args: argparse.Namespace, shape: str, pid: int
) -> None:
    results = []
    for concurrency in args.concurrency:
        for n in range(args.runs):
            result = _inventory_once(
                workdir, control, concurrency, args, f"{shape} c{concurrency}", pid
            )
            result["tag"] += f" run {n + 1}"
            _report(result, args.latency_ms)
            results.append(result)
    first = results[-1]["calls"]["by_account"]
    active = [a for a, ops in first.items() if "iam:GetAccountAuthorizationDetails" in ops]
    per_op: Counter[str] = Counter()
    for account in active:
        per_op.update(first.get(account, {}))
    print(f"  IAM/STS calls per account by operation (mean of {len(active)} accounts):")
    for op, total in sorted(per_op.items()):
        print(f"    {op:45s} {total / len(active):8.1f}")
    if not args.extra or not active:
        return
    # Same account, many more groups and policies: the call count must not move.
    probe = active[0]
    before_shape = _shape(url, probe)
    before_calls = sum(first.get(probe, {}).values())
    _add_groups_and_policies(url, probe, args.extra)
    after_shape = _shape(url, probe)
    after = _inventory_once(workdir, control, args.concurrency[-1], args, "extra-groups", pid)
    after_calls = sum(after["calls"]["by_account"].get(probe, {}).values())
    print(f"  account {probe}: before {before_shape} -> {before_calls} calls")
    print(f"  account {probe}: after  {after_shape} -> {after_calls} calls")
