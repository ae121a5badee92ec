"""Inventory on a Prefect work pool with 1, 2, 4... workers: wall time beside its bounds.

A seeded sandbox organization (its own process, a fixed latency per call), a Prefect server
and the state both on PostgreSQL, the runbook deployed with ``iamc deploy`` on a process pool;
for each worker count, that many ``prefect worker`` processes (each taking ``--limit`` flow
runs at once) run the inventory deployment, whose accounts go out in batch runs
(``[prefect] accounts_per_run``). Reported per worker count: the wall time (the run's creation
to its end), the calls per account (which must not move with the workers; the first worker
count's run makes one more per account, as its accounts' credential reports are new: AWS
reuses one younger than four hours, tasks/iam_users.py), the latency floor
(calls x latency / the most calls ever in flight), the CPU the workers' processes used (per
call: what a model of 2,000 accounts is built from) and where the batch runs' time went (the
wait for a worker, the process start, the body). N workers are at best N times as fast as
one; the machine's cores bound the run too: client, sandbox, Prefect server, PostgreSQL and
flow-run start-up CPU share them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import bench_workdir, goal
from bench.inventory import _process_cpu, _start_sandbox, sandbox_env
from domain.distribution import WORK_POOL_ENV
from domain.spec import Inventory

SPEC = """name = "scale"
state = "{state}"
protected_users = ["breakglass-*"]
[aws]
rate_limits = {{ iam = {iam_rate} }}
[prefect]
accounts_per_run = {per_run}
# A batch waits for a worker however long it takes: its parent never takes one back. With the
# default (120 s) the parent runs the batches no worker took, in the `iamc` process itself, and
# a "one worker" run would be one worker plus its parent.
batch_start_seconds = 86400
"""
POOL = "iamc-bench-scale"
BATCH_THREADS = 8  # accounts a batch run works on at once (flows.account_batch's task runner)
USER_THREADS = Inventory().user_concurrency  # an account's users read at once
GOAL_SPEED_UP = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--users", type=int, default=20, help="per account")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--limit", type=int, default=1, help="flow runs a worker runs at once")
    parser.add_argument("--accounts-per-run", type=int, default=25)
    parser.add_argument("--iam-rate", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "IAMC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )


def _database(base: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"iamc_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(base).set(database=name).render_as_string(hide_password=False)


def _drop(base: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has waited for (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds of this machine's PostgreSQL so far: its live processes, and the backends
    the postmaster has reaped (Linux /proc; 0.0 for a server elsewhere)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if not head.endswith("(postgres"):
            continue
        fields = tail.split()
        ticks = int(fields[11]) + int(fields[12])
        if not _is_postgres(int(fields[1])):
            ticks += int(fields[13]) + int(fields[14])  # the postmaster: its reaped backends
        total += ticks / os.sysconf("SC_CLK_TCK")
    return total


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")", 1)[0].endswith("(postgres")
    except OSError:
        return False


def run(args: argparse.Namespace) -> None:
    from sandbox.control import SandboxControl

    workdir = bench_workdir("iamc-bench-scale-")
    cleanup: list[Any] = []
    try:
        _run(args, workdir, cleanup, SandboxControl)
    finally:
        for undo in reversed(cleanup):
            undo()


def _run(args: argparse.Namespace, workdir: Path, cleanup: list[Any], control_of: Any) -> None:
    from sqlalchemy.engine import make_url

    started = time.monotonic()
    sandbox, url = _start_sandbox(workdir, args.accounts, args.users, args.seed)
    cleanup.append(lambda: (sandbox.terminate(), sandbox.wait(timeout=30)))
    print(f"sandbox {args.accounts}x{args.users} seeded in {time.monotonic() - started:.0f} s")
    state_db, state = _database(args.postgres)
    prefect_db, _ = _database(args.postgres)
    cleanup.append(lambda: (_drop(args.postgres, state_db), _drop(args.postgres, prefect_db)))
    prefect_url = make_url(args.postgres).set(drivername="postgresql+asyncpg", database=prefect_db)
    server, api = _start_server(workdir, prefect_url.render_as_string(hide_password=False))
    cleanup.append(lambda: _stop(server))
    env = {**os.environ, **sandbox_env(url), "PREFECT_API_URL": api}
    spec = workdir / "spec.toml"
    spec.write_text(SPEC.format(state=state, iam_rate=args.iam_rate, per_run=args.accounts_per_run))
    subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "iamc.cli", "deploy", "-c", str(spec), "--work-pool", POOL],
        env=env, cwd=workdir, check=True, capture_output=True,
    )  # fmt: skip
    control = control_of(url, timeout=60)
    results = []
    for count in (int(n) for n in args.workers.split(",")):
        results.append(_once(args, workdir, env, control, count, (sandbox.pid, server.pid)))
    _report(args, results)


def _start_server(workdir: Path, database: str) -> tuple[subprocess.Popen[bytes], str]:
    """The Prefect server iamc starts (``iamc.prefect_api_server``), its database on PostgreSQL,
    in a process group of its own; its API URL once it answers."""
    import urllib.request

    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(workdir / "prefect-server"),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": api,
    }
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
        [sys.executable, "-m", "iamc.prefect_api_server", "--host", "127.0.0.1", "--port",
         str(port)],
        env=env, stdout=(workdir / "server.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2):  # noqa: S310 - local
                return server, api
        except OSError:
            time.sleep(0.5)
    _stop(server)
    raise SystemExit(f"the Prefect server did not answer in 180 s: {workdir / 'server.log'}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _once(
    args: argparse.Namespace,
    workdir: Path,
    env: dict[str, str],
    control: Any,
    count: int,
    pids: tuple[int, int],
) -> dict[str, Any]:
    sandbox_pid, server_pid = pids
    prefect = str(Path(sys.executable).parent / "prefect")
    workers = [
        _start_worker(prefect, f"bench-{count}-{n}", args.limit, env, workdir) for n in range(count)
    ]
    try:
        time.sleep(5)  # the workers poll the pool
        control.configure(latency_ms=args.latency_ms)
        control.reset_calls()
        sandbox0, server0, postgres0 = (
            _process_cpu(sandbox_pid), _tree_cpu(server_pid), _postgres_cpu()
        )  # fmt: skip
        since = time.time()
        wall, state = _run_inventory(env, workdir / "spec.toml")
        calls = control.calls()
        timeline = _batch_timeline(env["PREFECT_API_URL"], since)
        control.configure(latency_ms=0)
        sandbox_cpu = _process_cpu(sandbox_pid) - sandbox0
        # The Prefect server and PostgreSQL share the cores too (their CPU, not only the
        # workers' and the sandbox's, bounds the run).
        services_cpu = _tree_cpu(server_pid) - server0 + _postgres_cpu() - postgres0
        # Before they stop: a worker's CPU with that of the flow-run processes it reaped; a
        # batch run is Completed before its process has ended and been reaped (read earlier,
        # a run's figure missed a batch's CPU or not: 3.8 to 8.5 ms a call for one setup).
        _wait_reaped([worker.pid for worker in workers])
        cpu = sum(_tree_cpu(worker.pid) for worker in workers)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
    accounts_at_once = count * args.limit * min(BATCH_THREADS, args.accounts_per_run)
    accounts_at_once = min(accounts_at_once, args.accounts)
    # A floor, not an estimate: every call waits its latency, and no more calls than this are
    # ever in flight (each account's users are read USER_THREADS at once).
    in_flight = accounts_at_once * USER_THREADS
    return {
        "workers": count,
        "state": state,
        "wall": wall,
        "calls": calls["total"],
        "per_account": calls["total"] / args.accounts,
        "floor": calls["total"] * args.latency_ms / 1000 / in_flight,
        "in_flight": in_flight,
        "sandbox_cpu": sandbox_cpu,
        "services_cpu": services_cpu,
        "client_cpu": cpu,
        "load": os.getloadavg()[0],
        "timeline": timeline,
    }


def _batch_timeline(api: str, since: float) -> dict[str, float]:
    """Where the batch runs' time went, from the Prefect API: each run's wait to be taken by a
    worker (scheduled to Pending: the worker's poll), its process start (Pending to Running:
    interpreter, imports, the engine) and its body (Running to its end); medians, and the span
    from the first batch's schedule to the last one's end."""
    import json
    import statistics
    import urllib.request
    from datetime import datetime

    def call(path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - the bench's own local server
            f"{api}{path}", data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.load(response)

    def at(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    runs = call("/flow_runs/filter", {"limit": 200, "sort": "EXPECTED_START_TIME_DESC"})
    batches = [
        r for r in runs
        if r.get("parent_task_run_id") and r.get("end_time")
        and at(r["expected_start_time"]) >= since
    ]  # fmt: skip
    waits, starts, bodies, first, last = [], [], [], [], []
    for run in batches:
        history = call(f"/flow_run_states/?flow_run_id={run['id']}")
        states = {state["type"]: at(state["timestamp"]) for state in history}
        scheduled = at(run["expected_start_time"])
        pending = states.get("PENDING", scheduled)
        running = states.get("RUNNING", pending)
        waits.append(pending - scheduled)
        starts.append(running - pending)
        bodies.append(at(run["end_time"]) - running)
        first.append(scheduled)
        last.append(at(run["end_time"]))
    if not batches:
        return {}
    return {
        "batches": len(batches),
        "wait": statistics.median(waits),
        "start": statistics.median(starts),
        "body": statistics.median(bodies),
        "span": max(last) - min(first),
    }


def _wait_reaped(parents: list[int], timeout: float = 60) -> None:
    """Wait until none of ``parents`` has a child process (Linux /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children += int(fields[1]) in parents
        if not children:
            return
        time.sleep(0.2)


def _start_worker(
    prefect: str, name: str, limit: int, env: dict[str, str], workdir: Path
) -> subprocess.Popen[bytes]:
    command = [prefect, "worker", "start", "--pool", POOL, "--name", name, "--limit", str(limit)]
    return subprocess.Popen(  # noqa: S603 - Prefect's own CLI, fixed arguments
        command,
        # A worker looks for runs every 2 s, not Prefect's 10 s: one worker's batches (seconds
        # long here) would otherwise wait ~5 s each for its next look, and the figures would be
        # the poll's, not the distribution's. Production batches run for minutes.
        env={**env, "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_WORKER_QUERY_SECONDS": "2"},
        cwd=workdir,
        stdout=(workdir / f"worker-{name}.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _run_inventory(env: dict[str, str], spec: Path) -> tuple[float, str]:
    """``iamc inventory`` with the pool named: its accounts go out to the pool's workers,
    whose slots all go to batches (a parent run on the pool would hold one while it waits)."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "iamc.cli", "inventory", "-c", str(spec)],
        env={**env, WORK_POOL_ENV: POOL}, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-2000:])
    return wall, "COMPLETED" if done.returncode == 0 else f"exit {done.returncode}"


def _report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(
        f"inventory of {args.accounts} accounts x {args.users} users, latency "
        f"{args.latency_ms} ms, {args.limit} flow run(s) per worker, "
        f"{args.accounts_per_run} accounts per batch run, {os.cpu_count()} CPUs:"
    )
    for r in results:
        print(
            f"  {r['workers']} worker(s): wall {r['wall']:.1f} s ({r['state']}), latency floor "
            f"{r['floor']:.1f} s ({r['in_flight']} calls in flight at most), {r['calls']} calls = "
            f"{r['per_account']:.1f} per account; workers {r['client_cpu']:.0f} s CPU "
            f"({r['client_cpu'] / max(r['calls'], 1) * 1000:.1f} ms a call, flow-run start-up "
            f"included), sandbox {r['sandbox_cpu']:.0f} s CPU, Prefect server and PostgreSQL "
            f"{r['services_cpu']:.0f} s CPU, load {r['load']:.1f}"
        )
        if r["timeline"]:
            t = r["timeline"]
            print(
                f"    {t['batches']} batch runs, medians: {t['wait']:.1f} s to be taken by a "
                f"worker, {t['start']:.1f} s process start, {t['body']:.1f} s body; first "
                f"scheduled to last ended {t['span']:.1f} s"
            )
    one = next((r for r in results if r["workers"] == 1), None)
    most = max(results, key=lambda r: r["workers"])
    if one is not None and most is not one:
        speed_up = one["wall"] / most["wall"]
        # What the bounds allow: N workers at best N times one worker's pace; no faster than
        # the latency floor; and the machine's cores, which every process's CPU shares.
        cpu = most["client_cpu"] + most["sandbox_cpu"] + most["services_cpu"]
        cpu_bound = cpu / (os.cpu_count() or 1)
        allowed = one["wall"] / max(one["wall"] / most["workers"], most["floor"], cpu_bound)
        goal(
            f"scale: {most['workers']} workers vs 1, speed-up",
            speed_up,
            min(GOAL_SPEED_UP, allowed),
            "x",
            higher_is_better=True,
            detail=f"{one['wall']:.1f} s -> {most['wall']:.1f} s, {speed_up / allowed:.0%} of "
            f"what the bounds allow, {allowed:.2f}x ({most['workers']} workers; latency floor "
            f"{most['floor']:.1f} s; the CPU of workers, sandbox, Prefect server and PostgreSQL "
            f"{cpu_bound:.1f} s on {os.cpu_count()} cores)",
        )
    _model(args, one or results[0], results[-1])


def _model(args: argparse.Namespace, one: dict[str, Any], r: dict[str, Any]) -> None:
    """2,000 accounts from this run's calls per account, the workers' CPU per call (the run
    with the most workers) and the pace of one worker's batches (accounts a second, measured
    from its first batch's schedule to its last batch's end)."""
    per_call = r["client_cpu"] / max(r["calls"], 1)
    calls = 2000 * r["per_account"]
    span = (one["timeline"] or {}).get("span") or one["wall"]
    pace = args.accounts / span / (one["workers"] * args.limit)
    print(
        f"  model, 2,000 accounts x {args.users} users: {calls:,.0f} calls, "
        f"{calls * per_call / 60:.1f} CPU-minutes in the workers at {per_call * 1000:.1f} ms a "
        f"call; one worker's batches took {pace:.2f} accounts a second at this latency; "
        "wall ~ max(accounts / (workers x pace), CPU / cores):"
    )
    for workers, cores in ((4, 8), (16, 32), (64, 128)):
        latency = 2000 / (workers * args.limit * pace)
        cpu = calls * per_call / cores
        print(
            f"    {workers} workers x {args.limit} batch run(s) ({cores} cores): "
            f"~{max(latency, cpu) / 60:.1f} min (latency {latency / 60:.1f}, CPU {cpu / 60:.1f})"
        )
