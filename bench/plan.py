"""Plan computation for a synthetic 10,000-user inventory built directly in the store."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import bench_workdir, goal, run_flows_as_the_cli_does


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


# Issue 14's bounds for a 10,000-user plan.
WARM_BOUND_S = 5.0
COLD_BOUND_S = 10.0
RSS_BOUND_MIB = 500.0


def _build_store(workdir: Path, accounts: int, users: int) -> None:
    from state import Store

    inventories, mappings, identities = synthetic_org(accounts, users)
    with Store.open(f"sqlite:///{workdir / 'state.db'}") as store:
        migration = store.migrations.ensure_migration("bench-plan", {})
        run = store.runs.start_run(migration, "inventory")
        snapshot = store.snapshots.new_snapshot(migration, run)
        for inventory in inventories:
            store.snapshots.save_account_inventory(snapshot, inventory)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        mapping_run = store.runs.start_run(migration, "mapping")
        store.identity.save_mapping(mapping_run, snapshot, identities, [], mappings, [])
        store.runs.finish_run(mapping_run, "succeeded")


def _timed_plan(spec: Path, out: Path) -> dict[str, Any]:
    """One plan_flow run: wall time, the flow's phases, its summary."""
    from domain.progress import listening
    from flows.plan import plan_flow

    phases: dict[str, float] = {}

    def listen(event: str, data: dict[str, Any]) -> None:
        if event == "plan-phase":
            phases[data["phase"]] = phases.get(data["phase"], 0.0) + data["seconds"]

    started = time.perf_counter()
    with listening(listen):
        result = plan_flow(str(spec), str(out))
    return {"wall": time.perf_counter() - started, "phases": phases, "result": result}


def _peak_rss_mib() -> float:
    """This process's peak RSS. Linux's VmHWM starts afresh at exec; ru_maxrss does not (a
    child started by a 500 MiB parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan_once(spec: str, out: str) -> None:
    """The cold run's child process: one plan, then its figures as one JSON line."""
    run_flows_as_the_cli_does("flows.plan")
    timed = _timed_plan(Path(spec), Path(out))
    rss = _peak_rss_mib()
    print("BENCH " + json.dumps({**timed, "rss_mib": rss}, default=str))


def _print_phases(phases: dict[str, float], wall: float) -> None:
    for name, seconds in phases.items():
        print(f"    {name:16s} {seconds:6.2f} s")
    print(f"    {'Prefect, other':16s} {wall - sum(phases.values()):6.2f} s")


def _cold_plan(spec: Path, out: Path) -> tuple[dict[str, Any], float]:
    """The plan computed by a new process, imports included, reporting to the local Prefect
    server as `iamc` commands do (iamc/prefect_server.py); returns its figures and wall time."""
    env = dict(os.environ)
    started = time.perf_counter()
    child = subprocess.run(  # noqa: S603 - this interpreter, our own module
        [
            sys.executable,
            "-c",
            f"from bench.plan import plan_once; plan_once({str(spec)!r}, {str(out)!r})",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    cold_wall = time.perf_counter() - started
    lines = [x for x in child.stdout.splitlines() if x.startswith("BENCH ")]
    if child.returncode or not lines:
        print(child.stdout[-2000:], child.stderr[-4000:])
        raise SystemExit(f"cold plan process failed (exit {child.returncode})")
    return json.loads(lines[-1][len("BENCH ") :]), cold_wall


def run(args: argparse.Namespace) -> None:
    """Plan computation for a synthetic inventory built directly in the store.

    This process starts the local Prefect server (``iamc server``) of a fresh Prefect home, and
    a first run in it stores the plan. Cold: then a new Python process (``python -c``) imports
    iamc and, reporting to that server as every ``iamc`` command does, computes the plan,
    finds it stored (same hash), and writes its files;
    its wall time is measured by this process around the child, its peak RSS is the child's.
    Warm: the same again in this process, which has imported everything and started Prefect
    already, with the OS cache of the state DB warm. Figures are wall-clock: on a shared
    machine run it twice.
    """
    workdir = bench_workdir("iamc-bench-plan-")
    run_flows_as_the_cli_does("flows.plan")
    spec = workdir / "spec.toml"
    spec.write_text('name = "bench-plan"\nstate = "sqlite:///state.db"\n')
    t0 = time.monotonic()
    _build_store(workdir, args.accounts, args.users)
    built = time.monotonic() - t0
    print(f"built {args.accounts} accounts x {args.users} users in the store in {built:.1f} s")

    # A first run in this process: imports, Prefect's first flow run here (not counted).
    first = _timed_plan(spec, workdir / "out-first")
    print(f"first run in this process (fresh Prefect home, imports): {first['wall']:.1f} s")
    cold, cold_wall = _cold_plan(spec, workdir / "out-cold")
    result = cold["result"]
    actions = sum(result["actions"].values())
    print(
        f"plan {result['plan_id']}: {result['users']} users, {result['permission_sets']} "
        f"permission sets, {result['assignments']} assignments, {actions} actions"
    )
    goal("plan cold", cold_wall, COLD_BOUND_S, "s", detail="new process, imports included")
    print(
        f"    {'process start':16s} {cold_wall - cold['wall']:6.2f} s  (interpreter, imports; "
        "the local Prefect server already running)"
    )
    _print_phases(cold["phases"], cold["wall"])
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"    (the child's CPU time {cpu.ru_utime + cpu.ru_stime:.1f} s: wall above is shared)")
    rss = cold["rss_mib"]
    goal("plan peak RSS", rss, RSS_BOUND_MIB, "MiB", detail="the cold process: one plan")

    # Warm: this process has imported everything and started Prefect already.
    before = resource.getrusage(resource.RUSAGE_SELF)
    warm = _timed_plan(spec, workdir / "out-warm")
    after = resource.getrusage(resource.RUSAGE_SELF)
    warm_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    goal(
        "plan warm",
        warm["wall"],
        WARM_BOUND_S,
        "s",
        detail=f"same hash: {warm['result']['hash'] == result['hash']}, "
        f"reused: {warm['result']['reused']}",
    )
    _print_phases(warm["phases"], warm["wall"])
    print(f"    (this process's CPU time {warm_cpu:.1f} s, Prefect's server not included)")
    in_process = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"this process's peak RSS {in_process:.0f} MiB (holds the synthetic org as well)")

    with sqlite3.connect(workdir / "state.db") as db:
        stored = db.execute(
            "SELECT length(CAST(content AS BLOB)) FROM plans WHERE id = ?", (result["plan_id"],)
        ).fetchone()[0]
    sizes = {k: Path(v).stat().st_size for k, v in result["files"].items()}
    print(
        f"stored plan: {stored / 2**20:.1f} MiB in the state DB; files: "
        + ", ".join(
            f"{Path(result['files'][k]).name} {v / 2**20:.1f} MiB" for k, v in sizes.items()
        )
    )
