"""Command overhead: each `iamc` command run as a user runs it, wall time vs. its own work.

A sandbox organization in the demo's shape serves in this process; every command runs as a
subprocess (``.venv/bin/iamc ...``) against it, reporting to a local Prefect server started
once beforehand (as ``iamc server start`` does). A step command's own work is its flow body
(its AWS and database work, and the Prefect task runs inside it), which it logs with
``IAMC_TIMINGS=1``; a flow without that line (key scan) is measured by its run record's start
and finish, which covers less. Overhead is the wall time beyond the own work: interpreter,
imports, Prefect's flow run, artifacts, exit. Read-only commands are judged on their wall time,
and ``cpu`` is the child's user+sys CPU time (steadier than wall on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from bench.harness import (
    bench_workdir,
    goal,
    start_local_prefect_server,
    warm_up_prefect_server,
)
from sandbox.demo_spec import DEMO_SPEC, demo_waves

_OWN_WORK = re.compile(r"flows\.timing: \S+: own work ([\d.]+) s")
STEP_BOUND_S = 2.0  # overhead beyond the command's own AWS and database work
READ_BOUND_S = 1.0  # whole wall time of a read-only command


@dataclass
class Timing:
    command: str
    kind: str  # "step" or "read"
    wall: float
    own: float | None
    exit_code: int
    cpu: float = 0.0
    own_source: str = ""

    @property
    def figure(self) -> float:
        return self.wall - (self.own or 0.0) if self.kind == "step" else self.wall

    @property
    def bound(self) -> float:
        return STEP_BOUND_S if self.kind == "step" else READ_BOUND_S


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=6)
    parser.add_argument("--users", type=int, default=12, help="per account")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each command")


def _iamc() -> str:
    beside = Path(sys.executable).with_name("iamc")
    return str(beside) if beside.exists() else shutil.which("iamc") or "iamc"


def _latest_run(spec: Path) -> tuple[int, float] | None:
    """The newest run of the spec's migration: (id, seconds from start to finish)."""
    from domain.spec import load_spec
    from state import Store

    loaded = load_spec(spec)
    with Store.open(loaded.state) as store:
        migration_id = store.migrations.find_migration(loaded.name)
        runs = [] if migration_id is None else store.runs.list_runs(migration_id)
    if not runs:
        return None
    run = max(runs, key=lambda r: r.id)
    if run.finished is None:
        return run.id, 0.0
    return run.id, (run.finished - run.started).total_seconds()


def _run(
    args: list[str], kind: str, spec: Path, env: dict[str, str], expect: int = 0
) -> tuple[Timing, str]:
    before = _latest_run(spec) if kind == "step" else None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [_iamc(), *args], env={**env, "IAMC_TIMINGS": "1"}, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    wall = time.monotonic() - started
    after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after_usage.ru_utime - usage.ru_utime) + (after_usage.ru_stime - usage.ru_stime)
    if done.returncode != expect:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"iamc {' '.join(args)} exited {done.returncode}, expected {expect}")
    own, source = None, ""
    if kind == "step":
        after = _latest_run(spec)
        if after is None or (before is not None and after[0] == before[0]):
            raise SystemExit(f"iamc {' '.join(args)} recorded no run")
        logged = _OWN_WORK.findall(done.stderr)
        own, source = (sum(float(s) for s in logged), "body") if logged else (after[1], "run")
    label = " ".join(a for a in args if a not in ("-c", str(spec)))
    timing = Timing(label, kind, wall, own, done.returncode, cpu, source)
    return timing, done.stdout + done.stderr


def run(args: argparse.Namespace) -> None:
    from sandbox.seed import seed_organization
    from sandbox.server import Sandbox

    workdir = bench_workdir("iamc-bench-commands-")
    spec = workdir / "spec.toml"
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=args.seed)
        os.environ.update(sandbox.env())
        manifest = seed_organization(
            boto3.Session(),
            accounts=args.accounts,
            users_per_account=args.users,
            seed=args.seed,
            samples_dir=workdir / "samples",
            endpoint_url=sandbox.url,
        )
        active = sorted(a.account_id for a in manifest.accounts if a.status == "ACTIVE")
        spec.write_text(DEMO_SPEC + demo_waves(active))
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("PREFECT_API_URL", None)
        # The commands log as a user's do (run logs to the API), not at this process's level.
        env.pop("PREFECT_LOGGING_LEVEL", None)
        iamc = _iamc()
        print(
            f"sandbox: {args.accounts} accounts x {args.users} users (demo shape), {sandbox.url}; "
            f"commands: {iamc}; PREFECT_HOME {env['PREFECT_HOME']}",
            flush=True,
        )
        started = time.monotonic()
        warm_up_prefect_server(start_local_prefect_server(env))
        print(f"local Prefect server started in {time.monotonic() - started:.1f} s (not counted)")
        try:
            timings = _measure(args, spec, env, active)
        finally:
            subprocess.run([iamc, "server", "stop"], env=env, check=False, capture_output=True)  # noqa: S603
    _print(timings)


def _measure(
    args: argparse.Namespace, spec: Path, env: dict[str, str], active: list[str]
) -> list[Timing]:
    c = ["-c", str(spec)]
    timings: list[Timing] = []

    def step(*argv: str, expect: int = 0) -> str:
        timing, output = _run([*argv, *c], "step", spec, env, expect)
        timings.append(timing)
        return output

    def read(*argv: str, expect: int = 0) -> str:
        timing, output = _run([*argv, *c], "read", spec, env, expect)
        timings.append(timing)
        return output

    for _ in range(args.repeat):
        # Each round on a fresh state (an approval is recorded once); AWS keeps what the last
        # round provisioned, which this round's apply adopts.
        for stale in spec.parent.glob("state.db*"):
            stale.unlink()
        step("inventory")
        read("report", "inventory")
        step("map")
        step("scan")
        read("report", "keys")
        step("workloads")
        read("report", "workloads")
        output = step("plan", "--wave", "wave-1", "--out", str(spec.parent / "plans"))
        plan_id = _plan_id(output)
        plan_hash = _plan_hash(spec, plan_id)
        read("plan", "show", str(plan_id))
        read("approve", str(plan_id), "--by", "bench", "--ticket", "B-1", "--hash", "0" * 12,
             "--stage", "provision", expect=2)  # fmt: skip
        read("approve", str(plan_id), "--by", "bench", "--ticket", "B-1", "--hash", plan_hash,
             "--stage", "provision")  # fmt: skip
        output = step("apply", str(plan_id), "--stage", "provision")
        run_id = _latest_run(spec)
        read("runs")
        assert run_id is not None
        read("status", str(run_id[0]))
        read("report", "waves")
    return timings


def _plan_id(output: str) -> int:
    match = re.search(r"plan (\d+)", output)
    if match is None:
        raise SystemExit(f"no plan id in: {output}")
    return int(match.group(1))


def _plan_hash(spec: Path, plan_id: int) -> str:
    from engine.migration import Migration
    from engine.reports import load_plan

    with Migration.open(spec) as mig:
        return str(load_plan(mig, plan_id)[1]["hash"][:12])


def _print(timings: list[Timing]) -> None:
    print(
        "\nwall = subprocess wall time; own = the flow body (body) or the run record (run); "
        "cpu = the child's CPU time;\nfigure = wall - own for step commands, wall for read-only "
        "ones. Shared machine: noisy."
    )
    print(
        f"{'command':44s} {'wall s':>7s} {'cpu s':>6s} {'own s':>10s} {'figure s':>9s} "
        f"{'bound':>7s}  verdict"
    )
    worst: dict[str, float] = {}
    for t in timings:
        own = f"{t.own:5.2f} {t.own_source:>4s}" if t.own is not None else f"{'-':>10s}"
        name = "overhead" if t.kind == "step" else "wall"
        verdict = "met" if t.figure <= t.bound else "NOT met"
        print(
            f"{t.command[:44]:44s} {t.wall:7.2f} {t.cpu:6.2f} {own} {t.figure:9.2f} "
            f"{'<= ' + format(t.bound, '.0f') + ' s':>7s}  {name} {verdict}"
        )
        worst[t.kind] = max(worst.get(t.kind, 0.0), t.figure)
    for kind, bound, what in (("step", STEP_BOUND_S, "overhead"), ("read", READ_BOUND_S, "wall")):
        if kind in worst:
            verdict = "met" if worst[kind] <= bound else "NOT met"
            print(
                f"worst {'step command' if kind == 'step' else 'read-only command'} {what}: "
                f"{worst[kind]:.2f} s (bound <= {bound:.0f} s): {verdict}"
            )
            label = "step command overhead" if kind == "step" else "read-only wall"
            goal(
                f"commands: worst {label}",
                worst[kind],
                bound,
                "s",
            )
