"""One member account unreachable, on a real Prefect server: each stage's run fails that account
alone, with AWS's reason, and a Retry finishes it once the account is back.

The account's OrganizationAccountAccessRole is deleted after the plan, as an operator meets it:
provision, disable and delete are each started from the served ``apply`` deployment. Each run
is recorded (``iamc runs``); that account's task is Failed with AWS's words; the other accounts'
tasks finish (delete refuses them instead: a resource policy in the unreadable account could
name their users, so no user is deleted while it can't be read); the per-account table,
``iamc status`` and the task states agree. With the role back, Retry of each run (what the UI's
button does) completes it and no mutation is sent twice.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from console.operator import artifact_key, deployment_name
from domain.deletion import deletes_in
from domain.plan import Plan
from iamc.serve import stop_process
from state import Store

SANDBOX_SIZE = (3, 4)  # accounts, IAM users each: small, the run is what is under test
MIGRATION = "e2e-contain"
SPEC = f"""name = "{MIGRATION}"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[aws]
first_status_poll_s = 0.2  # the sandbox answers IN_PROGRESS twice, not for seconds
rate_limits = {{ iam = 40 }}
[decommission]
bake_days = 0  # the bake period itself is tested elsewhere
"""
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
ROLE = "OrganizationAccountAccessRole"
REFUSED = "sts:AssumeRole on resource"


def _wait(client, flow_run_id, states: set[str], timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.type.value in states:
            return run
        time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} did not reach {states}")


def _tasks(client, flow_run_id) -> dict[str, object]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    return {t.name: t.state for t in runs}


def _table(client, key: str) -> tuple[list[dict], str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    assert found, f"no artifact {key}"
    data = found[0].data
    return (json.loads(data) if isinstance(data, str) else data), found[0].description or ""


def _remove_role(iam) -> dict:
    kept = {
        "trust": iam.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"],
        "attached": [
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]
        ],
    }
    for arn in kept["attached"]:
        iam.detach_role_policy(RoleName=ROLE, PolicyArn=arn)
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=ROLE, PolicyName=name)
    iam.delete_role(RoleName=ROLE)
    return kept


def _put_role_back(iam, kept: dict) -> None:
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(kept["trust"]))
    for arn in kept["attached"]:
        iam.attach_role_policy(RoleName=ROLE, PolicyArn=arn)


def test_an_unreachable_account_fails_alone_in_every_stage_and_retry_finishes(
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

    for step in (["inventory"], ["map"], ["plan", "--out", str(tmp_path / "plan")]):
        result = iamc(*step, "-c", str(spec))
        assert result.returncode == 0, result.stdout + result.stderr
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        info = store.plans.get_plan(
            store.plans.latest_plan_id(store.migrations.find_migration(MIGRATION))
        )
        plan = Plan.from_content(info.content)
    approve = ["approve", str(info.id), "-c", str(spec), "--by", "cab", "--ticket", "CHG-7"]
    approve += ["--hash", info.hash[:12]]
    assert iamc(*approve, "--stage", "all").returncode == 0
    deleting = deletes_in(plan)
    result = iamc(*approve, "--stage", "delete", "--deletes", str(deleting))
    assert result.returncode == 0, result.stdout + result.stderr
    by_stage = {
        stage: {a.account_id for a in plan.actions if a.stage == stage and a.account_id}
        for stage in ("provision", "disable", "delete")
    }
    victim = sorted(by_stage["provision"] & by_stage["disable"] & by_stage["delete"])[0]
    iam = sandbox_process.member_iam(victim)  # assumed while the role is there: stays usable
    kept = _remove_role(iam)

    control = sandbox_process.control
    control.reset_calls()
    serve_log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "iamc.cli", "serve", "-c", str(spec)],
        env=env,
        cwd=tmp_path,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    runs = {}
    try:
        with (
            temporary_settings({PREFECT_API_URL: prefect_api}),
            get_client(sync_client=True) as client,
        ):
            name = f"apply/{deployment_name('apply', MIGRATION)}"
            deadline, deployment = time.monotonic() + 120, None
            while deployment is None and time.monotonic() < deadline:
                try:
                    deployment = client.read_deployment_by_name(name)
                except Exception:  # not registered yet
                    time.sleep(0.5)
            assert deployment is not None, (tmp_path / "serve.log").read_text()

            for stage in ("provision", "disable", "delete"):
                run = client.create_flow_run_from_deployment(
                    deployment.id, parameters={"plan_id": info.id, "stage": stage}
                )
                ended = _wait(client, run.id, TERMINAL)
                assert ended.state.type.value == "FAILED", (stage, ended.state)
                assert "press Retry on this flow run" in ended.state.message
                assert "iamc resume" in ended.state.message
                runs[stage] = run.id
                tasks = _tasks(client, run.id)
                mine = {n: s for n, s in tasks.items() if n.startswith(f"{stage} {victim}")}
                assert len(mine) == 1, tasks
                state = next(iter(mine.values()))
                assert state.type.value == "FAILED" and REFUSED in state.message, state
                others = {n: s.type.value for n, s in tasks.items() if n not in mine}
                rows, description = _table(client, artifact_key(MIGRATION, f"apply-{stage}"))
                table = {r["account"]: r for r in rows}
                # A long reason is cut in its cell and written whole in the description.
                assert table[victim]["state"] == "FAILED" and table[victim]["reasons"]
                assert REFUSED in description and victim in description
                if stage != "delete":
                    assert set(others.values()) == {"COMPLETED"}, others
                    assert all(r["state"] == "done" for a, r in table.items() if a != victim)
                else:
                    # No user anywhere is deleted while a resource policy naming it can't
                    # be ruled out: the other accounts' users are refused, saying why.
                    assert control.calls()["calls"].get("iam:DeleteUser", 0) == 0
                    assert all(
                        r["state"] != "done" and r["reasons"]
                        for a, r in table.items()
                        if a != victim
                    ), table
                    assert "could not be read" in description
                # The run is recorded; iamc status says which account failed and why.
                run_id = int(re.search(r"run (\d+)", ended.state.message).group(1))
                status = iamc("status", str(run_id), "-c", str(spec))
                assert f"{victim}: account failed: " in status.stdout, status.stdout
                assert REFUSED in status.stdout.replace("\n", " ")
            listed = iamc("runs", "-c", str(spec)).stdout
            assert listed.count("apply") >= 3 and "failed" in listed

            _put_role_back(iam, kept)
            for stage in ("provision", "disable", "delete"):
                # What the UI's Retry button does: the run goes back to Scheduled, the served
                # deployment runs it again from the top; the journal skips what is done.
                client.set_flow_run_state(
                    runs[stage], Scheduled(name="AwaitingRetry", message="Retry"), force=True
                )
                _wait(client, runs[stage], {"SCHEDULED", "PENDING", "RUNNING"}, timeout=30)
                done = _wait(client, runs[stage], TERMINAL)
                assert done.state.type.value == "COMPLETED", (stage, done.state)
                rows, _ = _table(client, artifact_key(MIGRATION, f"apply-{stage}"))
                assert {r["state"] for r in rows} == {"done"}, rows
    finally:
        stop_process(server)
        serve_log.close()

    calls = control.calls()["calls"]
    kinds = [a.kind for a in plan.actions]
    assert calls.get("sso-admin:CreateAccountAssignment", 0) == kinds.count("create-assignment")
    assert calls.get("iam:DeleteUser", 0) == deleting
