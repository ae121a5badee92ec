"""Beyond one machine: `centralize` on a Prefect work pool run by three `prefect worker`s.

The Prefect server and the state both on PostgreSQL; `iamc deploy` registers the runbook on a
process pool (with the automation that marks a run whose worker died as Crashed); three real
worker processes run it: one holds the `centralize` run (``--limit 1``), the other two the
batch runs each step sends its accounts out in. In the middle of provisioning, the worker
running one batch is killed with SIGKILL, its flow run's process with it. The batch is marked
Crashed once its heartbeats stop, the parent sends its accounts again, the other worker
finishes them from the journal, and the runbook goes on to the verdict: every action journaled
once and done, each assignment created once, AWS as the plan says (what a one-process run
leaves: the same plan, every action done once).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from console.operator import artifact_key, deployment_name
from domain.deletion import deletes_in
from domain.plan import Plan
from engine.batches import BATCH_FLOW
from engine.migration import Migration
from engine.reports import load_plan
from engine.wave_progress import waves_progress
from iamc.serve import spawn_server, stop_process, wait_healthy
from state import Store
from tests.conftest import IDLE_SERVICES, POSTGRES_URL_ENV
from tests.e2e.flow_runs import TERMINAL, asked, flow_run_in, next_pause, wait

pytestmark = pytest.mark.postgres

SANDBOX_SIZE = (2, 6)
POOL = "e2e-pool"
MIGRATION = "e2e-pool"
SPEC = """name = "e2e-pool"
state = "{state}"
protected_users = ["breakglass-*"]
[aws]
first_status_poll_s = 0.2
rate_limits = {{ iam = 40 }}
[notify]
portal_url = "https://acme.awsapps.com/start"
[decommission]
bake_days = 0
[prefect]
accounts_per_run = 2  # a batch per step: each is a process to start
heartbeat_seconds = 30
crashed_after_seconds = 60
"""
# The server services a pool needs beyond the tests' other servers: automations' triggers and
# actions (a silent run marked Crashed) and the workers' clean-up messages; the tests' idle
# services stay off, schedules among them (the daily bake-watch stays unscheduled here).
POOL_SERVICES = ("TRIGGERS", "ACTIONS", "CLEANUP_RECONCILER")
SERVER_SERVICES = {
    f"PREFECT_SERVER_SERVICES_{service}_ENABLED": str(service in POOL_SERVICES).lower()
    for service in (*IDLE_SERVICES, *POOL_SERVICES)
}


def _database(base_url: str) -> str:
    name = f"iamc_e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name


def _drop(base_url: str, name: str) -> None:
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def pool(sandbox_process, tmp_path_factory):
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_URL_ENV} not set: the work pool needs PostgreSQL")
    tmp = tmp_path_factory.mktemp("pool")
    state_db, prefect_db = _database(base), _database(base)
    state = make_url(base).set(database=state_db).render_as_string(hide_password=False)
    prefect_url = make_url(base).set(drivername="postgresql+asyncpg", database=prefect_db)
    spec = tmp / "spec.toml"
    spec.write_text(SPEC.format(state=state))
    server_env = {
        **SERVER_SERVICES,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_url.render_as_string(hide_password=False),
    }
    with mock.patch.dict(os.environ, server_env):
        server, api = spawn_server(0, tmp / "prefect")
    workers: list[subprocess.Popen] = []
    world = SimpleNamespace(tmp=tmp, spec=spec, state=state, api=api, workers=workers)
    try:
        wait_healthy(api, timeout=180)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(sandbox_process.env, PREFECT_API_URL=api, PREFECT_LOGGING_LEVEL="INFO")
        deploy = subprocess.run(
            [sys.executable, "-m", "iamc.cli", "deploy", "-c", str(spec), "--work-pool", POOL],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deploy.returncode == 0, deploy.stderr + deploy.stdout
        world.deploy_output = deploy.stdout
        prefect = str(Path(sys.executable).parent / "prefect")

        def start_worker(n: int, limit: int) -> subprocess.Popen:
            log = (tmp / f"worker{n}.log").open("w")
            worker = subprocess.Popen(
                [
                    prefect,
                    "worker",
                    "start",
                    "--pool",
                    POOL,
                    "--name",
                    f"w{n}",
                    "--limit",
                    f"{limit}",
                ],
                env=env,
                cwd=tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            workers.append(worker)
            return worker

        world.start_worker = start_worker
        yield world
    finally:
        for worker in workers:
            _kill_tree(worker.pid)
        stop_process(server)
        _drop(base, state_db)
        _drop(base, prefect_db)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it (a worker and its flow runs)."""
    todo, seen = [pid], []
    while todo:
        current = todo.pop()
        seen.append(current)
        todo.extend(_children(current))
    for each in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def _process_of(flow_run_id) -> int | None:
    """The pid of the process running a flow run (its environment names the run)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


def _parent_pid(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def test_centralize_on_three_workers_survives_a_worker_killed_mid_apply(pool, sandbox_process):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    control = sandbox_process.control
    assert f"account-batch ({MIGRATION})" in pool.deploy_output
    with temporary_settings({PREFECT_API_URL: pool.api}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(
            f"centralize/{deployment_name('centralize', MIGRATION)}"
        )
        assert deployment.work_pool_name == POOL
        # Workers start the engine directly, not through Prefect's workspace supervisor.
        assert deployment.job_variables["command"] == f"{sys.executable} -m prefect.engine"
        # The first worker takes one flow run at a time: the centralize run; the other two
        # start once it runs, and take the batches.
        first = pool.start_worker(1, 1)
        run = client.create_flow_run_from_deployment(deployment.id)
        flow_run_in(client, run.id, {"RUNNING"} | TERMINAL)
        pool.start_worker(2, 4)
        pool.start_worker(3, 4)
        paused = flow_run_in(client, run.id, {"PAUSED"} | TERMINAL)
        assert paused.state.type.value == "PAUSED", (paused.state, _logs(pool))
        # Inventory went out to the workers: one batch of the wave's accounts.
        batches = _batches(client)
        inventory = [b.name for b in batches if b.name.startswith("inventory")]
        assert len(inventory) == 1, batches
        assert re.fullmatch(r"inventory \d+ accounts \d{12}\.\.\d{12}", inventory[0]), inventory
        # Its progress counts the accounts the batch did on its worker, as a local run's does.
        said = _progress_said(client, "inventory")
        assert re.fullmatch(rf"inventory of {MIGRATION}: (\d+) of \1 accounts done", said), said
        # So did the key scan, each batch on a worker with the scan's salt from the state DB
        # (a batch that found none would have failed).
        scans = [b for b in batches if b.name.startswith("key scan")]
        assert scans and {b.state.type.value for b in scans} == {"COMPLETED"}, batches

        # Provision slowly, so that a batch can be caught in the middle of it.
        control.configure(latency_ms=150)
        control.reset_calls()
        pause_key = paused.state.state_details.pause_key
        _resume(client, control, run.id, pool.spec, "provision")
        batch = wait(lambda: _running_batch(client, "provision"), "a provision batch running")
        wait(
            lambda: control.calls()["calls"].get("sso-admin:CreateAccountAssignment", 0) >= 1,
            "the first assignment",
        )
        process = wait(lambda: _process_of(batch.id), "the batch's process", 60)
        worker = _parent_pid(process)
        assert worker != first.pid  # the parent's worker lives on
        _kill_tree(worker)  # the worker dies, and its flow run with it
        control.configure(latency_ms=0)

        crashed = flow_run_in(client, batch.id, TERMINAL, timeout=240)
        assert crashed.state.type.value == "CRASHED", crashed.state
        stages = []
        while True:
            done = wait(lambda key=pause_key: next_pause(client, run.id, key), "next pause", 400)
            if done.state.type.value != "PAUSED":
                break
            pause_key = done.state.state_details.pause_key
            _, step = asked(pool.spec)
            stages.append(step)
            _resume(client, control, run.id, pool.spec, step.removeprefix("approve "))
        assert done.state.type.value == "COMPLETED", (done.state, stages, _logs(pool))
        said = _progress_said(client, "apply-provision")
        assert re.fullmatch(rf"apply of {MIGRATION}: (\d+) of \1 actions done", said), said
        again = [b for b in _batches(client) if b.name.startswith(f"{batch.name} (attempt 2)")]
        assert [b.state.type.value for b in again] == ["COMPLETED"], _batches(client)
        # The workloads and verify steps' accounts went out to the workers too.
        for step in ("workloads", "verify"):
            sent = [b.state.type.value for b in _batches(client) if b.name.startswith(f"{step} ")]
            assert sent and set(sent) == {"COMPLETED"}, (step, _batches(client))
    _same_as_one_process(pool, control, sandbox_process)


def _same_as_one_process(pool, control, sandbox_process) -> None:
    """What a one-process run leaves: every action of every stage journaled once and done,
    each assignment and permission set created once, AWS as the plan says."""
    plan_id = _progress(pool.spec).plan_id
    with Store.open(pool.state) as store:
        info = store.plans.get_plan(plan_id)
        plan = Plan.from_content(info.content)
        entries = store.journal.journal_entries(plan_id)
        runs = store.runs.list_runs()
    assert Counter(e.action_id for e in entries) == Counter(a.id for a in plan.actions)
    assert {e.status for e in entries} <= {"succeeded", "adopted"}, Counter(
        e.status for e in entries
    )
    applied = Counter((r.params["stage"]) for r in runs if r.kind == "apply")
    assert set(applied.values()) == {1}, applied  # one run per stage, the crash included
    calls = control.calls()["calls"]
    planned = Counter(a.kind for a in plan.actions)
    assert calls.get("sso-admin:CreateAccountAssignment", 0) == planned["create-assignment"]
    world = sandbox_process.identity_center()
    wanted = {
        (a.account_id, a.params.get("principal_id"))
        for a in plan.actions
        if a.kind == "create-assignment"
    }
    assert wanted <= {(acct, principal) for acct, _, principal in world["assignments"]}


def _progress_said(client, step: str) -> str:
    """What a step's progress artifact (the parent run's) says now."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    key = artifact_key(MIGRATION, f"{step}-progress")
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    assert found, f"no artifact {key}"
    return str(found[0].description)


def _batches(client) -> list:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[BATCH_FLOW])), limit=200
    )


def _running_batch(client, step: str):
    return next(
        (
            b
            for b in _batches(client)
            if b.name.startswith(step) and b.state and b.state.type.value == "RUNNING"
        ),
        None,
    )


def _resume(client, control, flow_run_id, spec: Path, stage: str) -> None:
    from prefect.flow_runs import resume_flow_run

    progress = _progress(spec)
    plan, _ = Migration.call(load_plan, spec, progress.plan_id)
    if stage == "disable":
        for action in (a for a in plan.actions if a.kind == "create-workload-role"):
            control.switch_workload(
                action.account_id, action.params["user"], action.params["runtime"]
            )
    resume_flow_run(
        flow_run_id,
        run_input={
            "approver": "change-board",
            "ticket": f"CHG-{stage}",
            "decision": "approve",
            "stage": stage,
            "plan_hash": progress.plan_hash[:12],
            **({"deletes": deletes_in(plan)} if stage == "delete" else {}),
        },
    )


def _progress(spec: Path):
    return Migration.call(lambda mig: waves_progress(mig)[0], str(spec))


def _logs(pool) -> str:
    return "\n".join(
        f"--- {p.name}\n" + p.read_text()[-3000:] for p in sorted(pool.tmp.glob("worker*.log"))
    )
