"""Deployments on a real local Prefect server: a run fails mid-stage, Retry completes it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from iamc.serve import stop_process

SPEC = """name = "e2e-served"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
rate_limits = { iam = 40 }
"""
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for_state(client, flow_run_id, states: set[str], timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.type.value in states:
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not reach {states}")


def test_a_failed_apply_is_retried_like_the_ui_and_completes(
    sandbox_process, prefect_api, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(sandbox_process.env)
    env["PREFECT_API_URL"] = prefect_api
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)

    def iamc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "iamc.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    for step in (
        ["inventory", "-c", str(spec)],
        ["map", "-c", str(spec)],
        ["plan", "-c", str(spec), "--out", str(tmp_path / "plan")],
    ):
        result = iamc(*step)
        assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    approved = iamc(
        "approve",
        str(plan["plan_id"]),
        "-c",
        str(spec),
        "--by",
        "cab",
        "--ticket",
        "CHG-9",
        "--hash",
        plan["hash"][:12],
        "--stage",
        "provision",
    )
    assert approved.returncode == 0, approved.stderr

    serve_log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "iamc.cli", "serve", "-c", str(spec)],
        env=env,
        cwd=tmp_path,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    control = sandbox_process.control
    try:
        # Prefect read its settings at import: point this process's client at the server.
        with (
            temporary_settings({PREFECT_API_URL: prefect_api}),
            get_client(sync_client=True) as client,
        ):
            deadline = time.monotonic() + 120
            deployment = None
            while deployment is None and time.monotonic() < deadline:
                try:
                    deployment = client.read_deployment_by_name("apply/e2e-served")
                except Exception:  # not registered yet
                    time.sleep(1)
            assert deployment is not None, (tmp_path / "serve.log").read_text()

            control.fail_next_assignment("*", "*", "Injected: ConflictException from a test")
            control.reset_calls()
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"plan_id": plan["plan_id"]}
            )
            failed = wait_for_state(client, run.id, TERMINAL)
            assert failed.state.type.value == "FAILED", failed.state
            first_calls = control.calls()["calls"]

            # What the UI's Retry button does: force the terminal run back to Scheduled
            # ("AwaitingRetry"); the served deployment picks it up and runs it from the top.
            client.set_flow_run_state(
                run.id, Scheduled(name="AwaitingRetry", message="Retry from the UI"), force=True
            )
            wait_for_state(client, run.id, {"SCHEDULED", "PENDING", "RUNNING"}, timeout=30)
            done = wait_for_state(client, run.id, TERMINAL)
            assert done.state.type.value == "COMPLETED", done.state
            assert done.id == run.id and done.run_count >= 2
    finally:
        # Stop serve() before the server it talks to, or its shutdown hangs.
        stop_process(server)
        serve_log.close()

    calls = control.calls()["calls"]
    assert calls.get("sso-admin:CreatePermissionSet", 0) == len(plan["permission_sets"])
    # Each planned assignment created once, plus the one injected failure that was re-sent.
    assert calls.get("sso-admin:CreateAccountAssignment", 0) == len(plan["assignments"]) + 1
    assert first_calls.get("sso-admin:CreatePermissionSet", 0) == len(plan["permission_sets"])
