"""The whole runbook as one served `centralize` run on a real Prefect server, over two waves.

It pauses at the change board's approval of wave 1's provision; a resume through the API with
the form's input carries it on to provisioning; killed mid-provision and retried like the UI's
Retry button, it continues at provisioning (inventory, mapping, key scan and plan are not run
again) and resumes the same apply run. Then it pauses at every other approval of every wave
(disable, delete; with `bake_days = 0` the bake is over as soon as the users are disabled),
each resumed with the form's input, and ends Completed at the verdict; the status artifact
shows every account's stages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from console.operator import artifact_key, deployment_name
from domain.deletion import deletes_in
from engine.migration import Migration
from engine.reports import load_plan
from engine.wave_progress import waves_progress
from iamc.serve import stop_process
from state import Store
from tests.e2e.flow_runs import TERMINAL, asked, flow_run_in, next_pause, wait

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
[decommission]
bake_days = 0  # disabled users are ready at once: the runbook goes on to delete
"""
DEPLOYMENT = f"centralize/{deployment_name('centralize', 'e2e-central')}"


def _waves(accounts: list[str]) -> str:
    one, two = accounts[:1], accounts[1:]
    return (
        f'[[waves]]\nname = "wave-1"\ninclude_accounts = {one!r}\n'
        f'[[waves]]\nname = "wave-2"\ninclude_accounts = {two!r}\n'
    ).replace("'", '"')


def _runs(tmp: Path) -> list:
    with Store.open(f"sqlite:///{tmp / 'state.db'}") as store:
        return store.runs.list_runs()


@pytest.fixture(scope="module")
def served(sandbox_process, prefect_api, tmp_path_factory):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("centralize")
    spec = tmp / "spec.toml"
    accounts = sorted(
        a["account_id"]
        for a in sandbox_process.control.manifest()["accounts"]
        if a.get("status", "ACTIVE") == "ACTIVE"
    )
    spec.write_text(SPEC + _waves(accounts))
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

            world.deployment = wait(deployment, "the deployments", 120)
            yield world
    finally:
        stop_process(world.server)
        log.close()


def test_centralize_pauses_for_approval_and_resumed_with_input_reaches_provisioning(served):
    from prefect.flow_runs import resume_flow_run

    client, control = served.client, served.control
    control.configure(latency_ms=0)
    run = client.create_flow_run_from_deployment(served.deployment.id)
    paused = flow_run_in(client, run.id, {"PAUSED"} | TERMINAL)
    assert paused.state.type.value == "PAUSED", (paused.state, (served.tmp / "serve.log"))
    kinds = Counter(r.kind for r in _runs(served.tmp))
    assert kinds == {
        "inventory": 1,
        "mapping": 1,
        "key-scan": 1,
        "workloads": 1,
        "usage": 1,
        "plan": 1,
    }, kinds
    assert asked(served.spec) == ("wave-1", "approve provision")

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
            "plan_hash": _plan(served.spec, "wave-1").plan_hash[:12],
        },
    )
    wait(
        lambda: any(r.kind == "apply" for r in _runs(served.tmp)),
        "an apply run after the approval",
    )
    served.flow_run_id = run.id


def test_centralize_killed_mid_provision_and_retried_does_not_repeat_earlier_steps(served):
    from prefect.states import Scheduled

    client, control = served.client, served.control
    wait(
        lambda: control.calls()["calls"].get("sso-admin:CreateAccountAssignment", 0) >= 1,
        "the first assignment",
    )
    apply_run = next(r for r in _runs(served.tmp) if r.kind == "apply")
    pid = int(apply_run.process.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)  # the flow run's process dies mid-provision
    stopped = flow_run_in(client, served.flow_run_id, TERMINAL, timeout=120)
    assert stopped.state.type.value in ("CRASHED", "FAILED"), stopped.state
    assert {r.kind: r.status for r in _runs(served.tmp)}["apply"] == "running"  # cut off

    control.configure(latency_ms=0)
    client.set_flow_run_state(
        served.flow_run_id, Scheduled(name="AwaitingRetry", message="Retry from the UI"), force=True
    )
    paused = flow_run_in(client, served.flow_run_id, {"PAUSED"} | TERMINAL, timeout=300)
    assert paused.state.type.value == "PAUSED", paused.state
    # Next: the approval of replace when the plan moves a workload to a role (the key found in
    # a Lambda function places one), else of disable (notify ran after an empty replace).
    first = "replace" if _plan(served.spec, "wave-1").stage("replace").actions else "disable"
    assert asked(served.spec) == ("wave-1", f"approve {first}")
    served.pause_key = paused.state.state_details.pause_key
    served.first_pause = ("wave-1", f"approve {first}")

    runs = _runs(served.tmp)
    kinds = Counter(r.kind for r in runs)
    # Inventory, mapping, key scan, workloads, usage and plan ran once, before the kill; the
    # apply run was resumed.
    assert kinds == {
        "inventory": 1,
        "mapping": 1,
        "key-scan": 1,
        "workloads": 1,
        "usage": 1,
        "plan": 1,
        "apply": 1,
        "verify": 1,
        **({"notify": 1} if first == "disable" else {}),
    }, kinds
    assert {r.kind: r.status for r in runs} == {k: "succeeded" for k in kinds}
    # The approval artifact's versions: the plan as approved, then as waiting for disable.
    approvals = _artifact(
        client, artifact_key("e2e-central", "plan-approval", "wave-1"), versions=5
    )
    assert "APPROVED: stage provision by change-board (ticket CHG-77)" in approvals[1]
    verify = json.loads(_artifact(client, artifact_key("e2e-central", "verify", "wave-1")))
    assert verify and {row["result"] for row in verify} == {"ok"}


def test_centralize_pauses_at_each_approval_of_each_wave_and_ends_at_the_verdict(served):
    from prefect.flow_runs import resume_flow_run

    client = served.client
    pauses = [served.first_pause]
    while True:
        wave, step = pauses[-1]
        stage = step.removeprefix("approve ")
        progress = _plan(served.spec, wave)
        plan, _ = Migration.call(load_plan, served.spec, progress.plan_id)
        if stage == "disable":
            # The owners switch their workloads to the roles replace created: disable refuses
            # a workload until its role is in use (or its key has been quiet for long).
            for action in (a for a in plan.actions if a.kind == "create-workload-role"):
                served.control.switch_workload(
                    action.account_id, action.params["user"], action.params["runtime"]
                )
        resume_flow_run(
            served.flow_run_id,
            run_input={
                "approver": "change-board",
                "ticket": f"CHG-{wave}-{stage}",
                "decision": "approve",
                "stage": stage,
                "plan_hash": progress.plan_hash[:12],
                # Delete is approved on its own, quoting how many users it deletes.
                **({"deletes": deletes_in(plan)} if stage == "delete" else {}),
            },
        )
        run = wait(lambda: _next_pause(client, served), "the next pause or the end", 300)
        if run.state.type.value != "PAUSED":
            break
        pauses.append(asked(served.spec))
    assert run.state.type.value == "COMPLETED", run.state
    expected = [
        (wave, f"approve {stage}")
        for wave in ("wave-1", "wave-2")
        for stage in ("provision", "replace", "disable", "delete")
        if _plan(served.spec, wave).stage(stage).actions
    ]
    assert pauses == expected[1:], pauses  # wave 1's provision: the first test
    message = run.state.message
    assert message.startswith("Done: wave-1: every step, CIS 1.21: "), message
    assert "wave-2: every step" in message and "Nothing is left." in message

    runs = _runs(served.tmp)
    # Notify wrote each person's message (after replace, with the owners' hand-off).
    notify = next(r for r in runs if r.kind == "notify")
    csv = Path(notify.summary["csv"]).read_text()
    assert "https://acme.awsapps.com/start" in csv and notify.summary["people"] >= 1
    applied = Counter((r.params["plan_id"], r.params["stage"]) for r in runs if r.kind == "apply")
    assert set(applied.values()) == {1} and len(applied) == len(expected), applied
    assert {r.status for r in runs if r.kind == "apply"} == {"succeeded"}
    status = _artifact(client, "e2e-central-status")
    for wave in ("wave-1", "wave-2"):
        progress = _plan(served.spec, wave)
        for account in progress.accounts:
            row = next(line for line in status.splitlines() if line.startswith(f"| {account} |"))
            cells = row.split(" | ")[2:6]  # provision, replace, disable, delete
            assert all(c.startswith("done · run") or c == "—" for c in cells), row
        assert f"| {wave} | {len(progress.accounts)} | {progress.plan_id} | 19 of 19 |" in status


def _plan(spec: Path, wave: str):
    """The wave's progress as the state DB records it (its plan id and hash, its stages)."""

    def read(mig):
        return next(w for w in waves_progress(mig) if w.wave == wave)

    return Migration.call(read, str(spec))


def _next_pause(client, served):
    """The run, once it is paused again (a new pause) or has ended."""
    run = next_pause(client, served.flow_run_id, served.pause_key)
    if run is not None and run.state.type.value == "PAUSED":
        served.pause_key = run.state.state_details.pause_key
    return run


def _artifact(client, key: str, versions: int = 1):
    """The latest version's data, or the latest ``versions`` (newest first) when > 1."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=versions,
    )
    assert found, f"no artifact {key}"
    return found[0].data if versions == 1 else [a.data for a in found]
