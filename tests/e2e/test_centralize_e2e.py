"""The whole runbook as one served `centralize` run on a real Prefect server.

It pauses at the change board's approval; a resume through the API with the form's input
carries it on to provisioning; killed mid-provision and retried like the UI's Retry button, it
continues at provisioning (inventory, mapping and plan are not run again), resumes the same
apply run, then verifies and writes the notices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.migration import Migration
from engine.progress import migration_progress
from iamc.serve import stop_process
from state import Store

SPEC = """name = "e2e-central"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
first_status_poll_s = 0.2  # the sandbox answers IN_PROGRESS twice, not for seconds
rate_limits = { iam = 40 }
[notify]
portal_url = "https://acme.awsapps.com/start"
notice_days = 7
"""
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DEPLOYMENT = "centralize/00 centralize (e2e-central)"


def _wait(check, what: str, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _state(client, flow_run_id, states: set[str], timeout: float = 240):
    def check():
        run = client.read_flow_run(flow_run_id)
        return run if run.state and run.state.type.value in states else None

    return _wait(check, f"flow run in {states}", timeout)


def _runs(tmp: Path) -> list:
    with Store.open(f"sqlite:///{tmp / 'state.db'}") as store:
        return store.runs.list_runs()


@pytest.fixture(scope="module")
def served(sandbox_process, prefect_api, tmp_path_factory):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("centralize")
    spec = tmp / "spec.toml"
    spec.write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(sandbox_process.env)
    env["PREFECT_API_URL"] = prefect_api
    log = (tmp / "serve.log").open("a")

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "iamc.cli", "serve", "-c", str(spec)],
            env=env,
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    world = SimpleNamespace(tmp=tmp, spec=spec, server=start(), control=sandbox_process.control)
    try:
        with (
            temporary_settings({PREFECT_API_URL: prefect_api}),
            get_client(sync_client=True) as client,
        ):
            world.client = client

            def deployment():
                try:
                    return client.read_deployment_by_name(DEPLOYMENT)
                except Exception:  # not registered yet
                    return None

            world.deployment = _wait(deployment, "the deployments", 120)
            yield world
    finally:
        stop_process(world.server)
        log.close()


def test_centralize_pauses_for_approval_and_resumed_with_input_reaches_provisioning(served):
    from prefect.flow_runs import resume_flow_run

    client, control = served.client, served.control
    control.configure(latency_ms=0)
    run = client.create_flow_run_from_deployment(served.deployment.id)
    paused = _state(client, run.id, {"PAUSED"} | TERMINAL)
    assert paused.state.type.value == "PAUSED", (paused.state, (served.tmp / "serve.log"))
    kinds = Counter(r.kind for r in _runs(served.tmp))
    assert kinds == {"inventory": 1, "mapping": 1, "plan": 1}, kinds

    # Slow AWS down, so the next test can stop the run in the middle of provisioning.
    control.configure(latency_ms=120)
    control.reset_calls()
    resume_flow_run(
        run.id,
        run_input={
            "approver": "change-board",
            "ticket": "CHG-77",
            "decision": "approve",
            "stage": "provision",
            # Typed by the reviewer: the form no longer prefills it (issue 21).
            "plan_hash": Migration.call(migration_progress, str(served.spec)).plan_hash[:12],
        },
    )
    _wait(
        lambda: any(r.kind == "apply" for r in _runs(served.tmp)),
        "an apply run after the approval",
    )
    served.flow_run_id = run.id


def test_centralize_killed_mid_provision_and_retried_does_not_repeat_earlier_steps(served):
    from prefect.states import Scheduled

    client, control = served.client, served.control
    _wait(
        lambda: control.calls()["calls"].get("sso-admin:CreateAccountAssignment", 0) >= 1,
        "the first assignment",
    )
    apply_run = next(r for r in _runs(served.tmp) if r.kind == "apply")
    pid = int(apply_run.process.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the flow run's process dies mid-provision
    stopped = _state(client, served.flow_run_id, TERMINAL, timeout=120)
    assert stopped.state.type.value in ("CRASHED", "FAILED"), stopped.state
    assert {r.kind: r.status for r in _runs(served.tmp)}["apply"] == "running"  # cut off

    control.configure(latency_ms=0)
    client.set_flow_run_state(
        served.flow_run_id, Scheduled(name="AwaitingRetry", message="Retry from the UI"), force=True
    )
    done = _state(client, served.flow_run_id, TERMINAL, timeout=300)
    assert done.state.type.value == "COMPLETED", done.state

    runs = _runs(served.tmp)
    kinds = Counter(r.kind for r in runs)
    # Inventory, mapping and plan ran once, before the kill; the apply run was resumed.
    assert kinds == {
        "inventory": 1,
        "mapping": 1,
        "plan": 1,
        "apply": 1,
        "verify": 1,
        "notify": 1,
    }, kinds
    assert {r.kind: r.status for r in runs} == {k: "succeeded" for k in kinds}
    notify = next(r for r in runs if r.kind == "notify")
    csv = Path(notify.summary["csv"]).read_text()
    assert "https://acme.awsapps.com/start" in csv and notify.summary["people"] >= 1
    approval = _artifact(client, "e2e-central-plan-approval")
    assert "APPROVED: stage provision by change-board (ticket CHG-77)" in approval
    verify = json.loads(_artifact(client, "e2e-central-verify"))
    assert verify and {row["result"] for row in verify} == {"ok"}


def _artifact(client, key: str) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    assert found, f"no artifact {key}"
    return found[0].data
