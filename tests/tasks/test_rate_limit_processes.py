"""One rate limit across processes: four worker processes calling IAM in the same accounts,
counted by the sandbox (its recorder's peak requests per second per account and family)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.distribution import WORK_POOL_ENV
from sandbox.control import SandboxControl
from sandbox.server import Sandbox
from sandbox.strict_settings import Strictness
from state import Store
from tasks.rate_limits import burst

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = ["111111111111", "222222222222"]
PROCESSES = 4
# Low enough that four processes' bursts reach the sandbox together even on a loaded machine.
IAM_RATE = 5.0
CALLS_PER_ACCOUNT = 5  # per process: 20 an account, 3 s at 5/s once the burst is spent
ARRIVAL_SLACK = 2

# Four worker processes, forked from one that imported what they use (~2 s of CPU a process
# spared). Each builds the spec's AwsSessions as a flow run does (state DB, work-pool flag) and
# calls IAM in every account, one thread an account, as fast as its limiter lets it.
WORKERS = """
import json, os, sys, threading, traceback
from domain.spec import MigrationSpec
from tasks.aws import AwsSessions, warm_up_clients
import state.rate_buckets  # imported before the fork; each process connects on its own

warm_up_clients(("sts", "iam"), "us-east-1").join()  # models and session policy, read once

args = json.loads(sys.argv[1])
go_read, go_write = os.pipe()

def worker():
    rates = {"iam": args["rate"]}
    spec = MigrationSpec(name="rate", state=args["state"], aws={"rate_limits": rates})
    sessions = AwsSessions.from_spec(spec)
    clients = []
    for account in args["accounts"]:
        sessions.for_account(account).get_credentials().get_frozen_credentials()
        clients.append(sessions.for_account(account).client("iam"))
    mode = "shared" if sessions.limiters.shared is not None else "in-process"
    os.write(1, (mode + chr(10)).encode())
    os.read(go_read, 1)  # the go: every worker starts at once

    def work(client):
        for _ in range(args["calls"]):
            client.list_users()

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

pids = []
for _ in range(args["processes"]):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            worker()
            code = 0
        except BaseException:
            traceback.print_exc()
            os.write(1, b"failed" + bytes([10]))  # never leave the test waiting for a line
        finally:
            os._exit(code)
    pids.append(pid)
sys.stdin.readline()
os.write(go_write, b"g" * len(pids))
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
sys.exit(0 if codes == [0] * len(pids) else 1)
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # Any member role may be assumed: the accounts only need to exist as the limit's keys.
    strictness = Strictness(
        assume_role_checks=False, trust_policy_checks=False, identity_policy_checks=False
    )
    with Sandbox(port=0, strictness=strictness) as running:
        yield running


def run_workers(sandbox: Sandbox, state_url: str, work_pool: str | None) -> dict:
    """Start the workers, let them go together, and return the recorder's counts."""
    control = SandboxControl(sandbox.url)
    env = {**os.environ, **sandbox.env(), "PYTHONPATH": str(ROOT)}
    env.pop(WORK_POOL_ENV, None)
    if work_pool:
        env[WORK_POOL_ENV] = work_pool
    args = {
        "state": state_url,
        "rate": IAM_RATE,
        "accounts": ACCOUNTS,
        "calls": CALLS_PER_ACCOUNT,
        "processes": PROCESSES,
    }
    workers = subprocess.Popen(
        [sys.executable, "-c", WORKERS, json.dumps(args)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the workers end with it
    )
    assert workers.stdin is not None and workers.stdout is not None
    try:
        modes = {workers.stdout.readline().strip() for _ in range(PROCESSES)}
        control.reset_calls()  # count the calls only, not the AssumeRoles
        workers.stdin.write("go\n")
        workers.stdin.flush()
        assert workers.wait(timeout=60) == 0
        return {"modes": modes, **control.calls()}
    finally:
        if workers.poll() is None:
            os.killpg(workers.pid, signal.SIGKILL)
            workers.wait()


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_four_workers_share_each_accounts_limit(sandbox: Sandbox, store_url: str) -> None:
    Store.open(store_url).close()  # the flow run's store creates the schema, rate_buckets too
    # A token bucket holding `burst` tokens lets at most burst + rate calls start in any
    # second. The sandbox counts arrivals, which come a little after the token was taken and
    # not all equally late (a loaded machine's scheduling): a few calls of slack.
    bound = burst(IAM_RATE) + IAM_RATE + ARRIVAL_SLACK

    shared = run_workers(sandbox, store_url, work_pool="workers")
    assert shared["modes"] == {"shared"}
    for account in ACCOUNTS:
        assert shared["by_account"][account]["iam:ListUsers"] == PROCESSES * CALLS_PER_ACCOUNT
        assert shared["peak_per_second"][account]["iam"] <= bound, shared["peak_per_second"]

    # Outside a work pool each process keeps its own limiter: four processes, four bursts.
    alone = run_workers(sandbox, store_url, work_pool=None)
    assert alone["modes"] == {"in-process"}
    for account in ACCOUNTS:
        assert alone["peak_per_second"][account]["iam"] > bound, alone["peak_per_second"]
