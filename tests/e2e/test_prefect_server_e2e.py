"""Deployments on a real local Prefect server: a run fails mid-stage, Retry completes it once.

What the operator sees is checked too: the failed account's task is Failed and named by the
account, the per-account table artifact gives AWS's reason and, after Retry, shows it done;
the run logs tell the story per account at INFO, with no traceback.
"""

from __future__ import annotations

import json
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
first_status_poll_s = 0.2  # the sandbox answers IN_PROGRESS twice, not for seconds
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
    sandbox_process, prefect_api, iamc_runner, tmp_path
):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    env = iamc_runner.user_env(**sandbox_process.env, PREFECT_API_URL=prefect_api)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)

    def iamc(*args: str) -> subprocess.CompletedProcess:
        return iamc_runner.run(args, tmp_path, env)

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
                    deployment = client.read_deployment_by_name("apply/08 apply (e2e-served)")
                except Exception:  # not registered yet
                    time.sleep(1)
            assert deployment is not None, (tmp_path / "serve.log").read_text()

            control.fail_next_assignment("*", "*", "Injected: ConflictException from a test")
            control.reset_calls()
            # plan_id left empty: the deployment takes the latest plan.
            run = client.create_flow_run_from_deployment(deployment.id)
            failed = wait_for_state(client, run.id, TERMINAL)
            assert failed.state.type.value == "FAILED", failed.state
            first_calls = control.calls()["calls"]
            # One clear message that says what to do in the UI and in a shell.
            assert "press Retry on this flow run" in failed.state.message
            assert "iamc resume" in failed.state.message

            tasks = {t.name: t.state.type.value for t in _task_runs(client, run.id)}
            accounts = sorted(a["account_id"] for a in control.manifest()["accounts"])
            provision = {n: s for n, s in tasks.items() if n.startswith("provision ")}
            # One task per account with work, named by the account's id and name.
            assert len(provision) >= 2 and {n.split()[1] for n in provision} <= set(accounts)
            assert all(len(n.split()) >= 3 for n in provision), provision
            assert sorted(provision.values()) == ["COMPLETED"] * (len(provision) - 1) + ["FAILED"]
            accounts = sorted(n.split()[1] for n in provision)
            assert tasks["create permission sets"] == "COMPLETED"
            table = _latest_table(client, "e2e-served-apply-provision")
            failed_rows = [r for r in table if r["failed"]]
            assert len(failed_rows) == 1 and failed_rows[0]["state"] == "FAILED"
            assert "Injected: ConflictException from a test" in failed_rows[0]["reasons"]

            # What the UI's Retry button does: force the terminal run back to Scheduled
            # ("AwaitingRetry"); the served deployment picks it up and runs it from the top.
            client.set_flow_run_state(
                run.id, Scheduled(name="AwaitingRetry", message="Retry from the UI"), force=True
            )
            wait_for_state(client, run.id, {"SCHEDULED", "PENDING", "RUNNING"}, timeout=30)
            done = wait_for_state(client, run.id, TERMINAL)
            assert done.state.type.value == "COMPLETED", done.state
            assert done.id == run.id and done.run_count >= 2

            table = _latest_table(client, "e2e-served-apply-provision")
            assert [r["state"] for r in table] == ["done"] * len(table)
            assert not any(r["failed"] or r["reasons"] for r in table), table
            logs = _logs(client, run.id)
            assert not [line for line in logs if "Traceback" in line.message]
            for account_id in accounts:
                assert any(account_id in line.message and line.level == 20 for line in logs), (
                    f"no INFO line about {account_id}"
                )
            assert not _result_artifacts(client, run.id)
    finally:
        # Stop serve() before the server it talks to, or its shutdown hangs.
        stop_process(server)
        serve_log.close()

    calls = control.calls()["calls"]
    assert calls.get("sso-admin:CreatePermissionSet", 0) == len(plan["permission_sets"])
    # Each planned assignment created once, plus the one injected failure that was re-sent.
    assert calls.get("sso-admin:CreateAccountAssignment", 0) == len(plan["assignments"]) + 1
    assert first_calls.get("sso-admin:CreatePermissionSet", 0) == len(plan["permission_sets"])


def _task_runs(client, flow_run_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )


def _latest_table(client, key: str) -> list[dict]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    assert artifacts, f"no artifact {key}"
    data = artifacts[0].data
    return json.loads(data) if isinstance(data, str) else data


def _result_artifacts(client, flow_run_id) -> list:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )

    return client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            type=ArtifactFilterType(any_=["result"]),
        )
    )


def _logs(client, flow_run_id) -> list:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    found, offset = [], 0
    while True:
        page = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            offset=offset,
            limit=200,
        )
        found.extend(page)
        if len(page) < 200:
            return found
        offset += len(page)
