"""Serve the runbook's flows as Prefect deployments, so operators start, watch and retry them.

A failed run can only be retried from the UI ("Retry") if it came from a deployment, and a retry
re-runs the flow from the top on the same run id (AWS_FACTS, Prefect): every flow served here is
safe to re-run because it continues from the state store's journal.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from console.operator import RUNBOOK, deployment_name
from domain.distribution import migration_tag
from domain.errors import ServeError
from domain.spec import load_spec

log = logging.getLogger(__name__)


# What each deployment does, for the operator who opens it in the UI; {migration} and {spec}
# are filled in. Numbered in runbook order by console.operator.deployment_name.
DESCRIPTIONS = {
    "centralize": (
        "The whole runbook for migration {migration}, wave by wave (wave: one of the spec's "
        "waves; empty: every wave in order): inventory, mapping, key-scan, workloads, usage, "
        "plan, the change board's approval of provision (the run pauses: open it, press "
        "Resume, fill in the form), provision, verify, notify, the approval of replace, "
        "replace (workload users' roles), the approval of disable, disable, the bake period "
        "(the run pauses; the daily bake-watch resumes it once every disabled user is ready, "
        "or press Resume to look again), the approval of delete (on its own, with the number "
        "of users it deletes), delete, inventory again and the CIS 1.21 verdict. Every stage "
        "goes through apply's checks; nothing is skipped. Safe to Retry or to start again: it "
        "continues at the first step not finished yet, as the state database records it. Each "
        "step shows as a subflow run with its own table; the run's status artifact shows every "
        "wave's accounts by stage and what to press next. Status from a shell: iamc runs -c "
        "{spec}"
    ),
    "inventory": (
        "Step {n[inventory]}. Read every IAM user of every in-scope account of {migration} into a "
        "new snapshot. Changes nothing in AWS. Result: the inventory table artifact (users by "
        "class, keys, CIS 1.21 per account). Next: {n[mapping]} mapping."
    ),
    "mapping": (
        "Step {n[mapping]}. Match each human IAM user to an Identity Center user, by the spec's "
        "rules. Changes nothing in AWS. Result: a table of the users that matched no one or "
        "several (for the IdP team). Next: {n[key-scan]} key-scan."
    ),
    "key-scan": (
        "Step {n[key-scan]}. Find every place an access key is written down (the spec's code "
        "paths with their git history, and each account's Lambda, ECS, EC2, SSM, CloudFormation "
        "and CodeBuild configuration) and join it to its owner. Changes nothing in AWS; secrets "
        "are never stored. A user whose active key is found is held from disable and delete. "
        "Next: {n[workloads]} workloads."
    ),
    "workloads": (
        "Step {n[workloads]}. For each workload IAM user of {migration}, where its keys are used "
        "from: CloudTrail by access key id in every in-scope region (90 days), last-used dates, "
        "the key scan's findings; from that the runtime that most likely holds the key (Lambda, "
        "ECS, EC2, CodeBuild, GitHub Actions, Terraform, on-premises, a vendor, unknown), with "
        "its evidence and a confidence, and when its replacement role was first used. Changes "
        "nothing in AWS. Result: the workloads table artifact. Next: {n[usage]} usage."
    ),
    "usage": (
        "Step {n[usage]}. For each IAM user of {migration} (but the protected), what it used in "
        "the spec's [least_privilege] window: IAM's service-last-accessed data (actions for S3, "
        "EC2, IAM and Lambda) and its CloudTrail management events, joined per user; an "
        "account or user that could not be read is listed unread, never as unused. Changes "
        "nothing in AWS. Result: the usage artifact, which the plan's least-privilege section "
        "reads. Next: {n[plan]} plan."
    ),
    "plan": (
        "Step {n[plan]}. Compute the dry-run plan from the latest inventory and mapping: "
        "permission sets, account assignments, and what happens to each IAM user. Changes "
        "nothing in AWS. Result: the plan artifact. Next: {n[plan-and-approve]} plan-and-approve."
    ),
    "plan-and-approve": (
        "Step {n[plan-and-approve]}. Publish the plan and pause for the change board: open the "
        "paused run, read the plan artifact, press Resume (newer UI: in the run's ⋮ menu) and "
        "fill in the form (who, ticket, approve or reject, the stage, which starts at this "
        "run's stage parameter, and the plan hash you reviewed: it is never prefilled; delete "
        "is approved on its own, with the number of users it deletes). Leave plan_id empty to "
        "compute the plan first. "
        "Next: {n[apply]} apply."
    ),
    "apply": (
        "Step {n[apply]}. Carry out a stage of the approved plan: provision (permission sets, "
        "then each account's assignments), disable (keys inactive, quarantine policy; "
        "reversible) or delete (after the bake period, snapshot first). One task per account. "
        "Leave plan_id empty for the latest plan. An account that fails shows as a red task "
        "with AWS's reason; the other accounts go on. Fix the cause, then press Retry on the "
        "run: what is done is not repeated. Result: the per-account table artifact (as iamc "
        "status shows it). Next after provision: {n[verify]} verify."
    ),
    "verify": (
        "Step {n[verify]}. Check, for each migrated person, that the access landed: the "
        "assignment exists, the AWSReservedSSO role exists in each account with the permission "
        "set's policies, and nobody has less than their old IAM user had. Changes nothing. "
        "Result: a table per person and account. Next: {n[notify]} notify."
    ),
    "notify": (
        "Step {n[notify]}. Write, for each migrated person, a message (Markdown and .eml) and "
        "one CSV for mail merge: the access portal URL, their accounts and permission sets, and "
        "the dates their old IAM users will be disabled and deleted. Sends nothing unless "
        "send is ticked: then each notice is mailed through the spec's [notify.smtp], each "
        "recipient journaled, so Retry never mails anyone twice. Next: "
        "{n[apply]} apply with stage disable, once approved."
    ),
    "bake-watch": (
        "Step {n[bake-watch]}, daily at 07:00 UTC. For every user this migration disabled, look "
        "for attempted use since (CloudTrail denied calls and failed sign-ins, key last use). "
        "A user in use can't be deleted until re-enabled or a decision is recorded (iamc bake "
        "decide). Changes nothing in AWS."
    ),
    "rollback": (
        "Undo what a plan stage's apply runs did, newest first (assignments, then permission "
        "sets; or the disable of every user, or of one with user=ACCOUNT/NAME); what existed "
        "before, and what another wave uses, is left alone. run_id is an apply run's number "
        "(iamc runs -c {spec}). dry_run only lists what would be undone."
    ),
    "restore": (
        "Re-create deleted IAM users from their snapshots as far as AWS allows (user, path, "
        "tags, boundary, policies, groups, SSH keys, certificates) and list what can't come "
        "back (key secrets, password, MFA, resource-policy grants). Never creates access keys."
    ),
    "drift": (
        "After provisioning, any time: compare every permission set and account assignment "
        "{migration} created or adopted with AWS (out-of-band edits of a set, a set left "
        "LATEST_PERMISSION_SET_NOT_PROVISIONED in an account, an assignment removed, a set "
        "deleted). Changes nothing in AWS. One task per account; one that can't be read fails "
        "with its reason and the read says it is partial. Result: the drift artifact and, when "
        "something drifted, a plan that puts it back, approved and applied like any plan "
        "(stage provision)."
    ),
}

# Daily runs: the bake watch's evidence is in its table by morning.
SCHEDULES = {"bake-watch": "0 7 * * *"}


def deployments(
    spec_path: str | Path,
    work_pool: str | None = None,
    env: dict[str, str] | None = None,
    command: str | None = None,
) -> list[Any]:
    """The runbook's deployments for one migration spec, numbered in runbook order.

    Each is named ``N step (migration)`` and takes the spec's path as its default parameter.
    With ``work_pool`` (``iamc deploy``) they are that pool's, entered by module path (a
    worker imports them from the installed package), with ``env`` in their job variables, and
    the batch deployment that spreads each step's accounts over the workers comes with them.
    """
    # Deferred: the flows import Prefect, which reads its settings when imported (serve_deployments
    # sets them first); `iamc server` and `iamc ui`, which import this module, never need them.
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.apply import apply_flow, rollback_flow
    from flows.bake import bake_watch_flow
    from flows.centralize import centralize_flow
    from flows.drift import drift_flow
    from flows.inventory import inventory_flow
    from flows.key_scan import key_scan_flow
    from flows.mapping import mapping_flow
    from flows.notify import notify_flow
    from flows.plan import plan_and_approve, plan_flow
    from flows.restore import restore_flow
    from flows.usage import usage_flow
    from flows.verify import verify_flow
    from flows.workloads import workloads_flow

    spec = load_spec(spec_path)
    path = str(Path(spec_path).resolve())
    tags = ["iam-centralize", migration_tag(spec.name)]
    inventory = inventory_flow.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=spec.inventory.concurrency)
    )
    key_scan = key_scan_flow.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=spec.scan.concurrency)
    )
    flows = {
        "centralize": centralize_flow,
        "inventory": inventory,
        "mapping": mapping_flow,
        "key-scan": key_scan,
        "workloads": workloads_flow,
        "usage": usage_flow,
        "plan": plan_flow,
        "plan-and-approve": plan_and_approve,
        "apply": apply_flow,
        "verify": verify_flow,
        "notify": notify_flow,
        "bake-watch": bake_watch_flow,
        "rollback": rollback_flow,
        "restore": restore_flow,
        "drift": drift_flow,
    }
    numbers = {step: f"{RUNBOOK.index(step):02d}" for step in RUNBOOK}
    on_pool = _on_pool(work_pool, env, command)
    if on_pool:
        # A worker imports each flow by module path: options given here would not reach it.
        flows = {**flows, "inventory": inventory_flow, "key-scan": key_scan_flow}
    served = {
        step: flow.to_deployment(
            name=deployment_name(step, spec.name),
            parameters={"spec_path": path},
            tags=tags,
            description=DESCRIPTIONS[step].format(migration=spec.name, spec=path, n=numbers),
            cron=SCHEDULES.get(step),
            **on_pool,
        )
        for step, flow in flows.items()
    }
    offer_waves(served["centralize"], [w.name for w in spec.waves])
    if on_pool:
        served["account-batch"] = _batch_deployment(spec.name, tags, on_pool)
    return list(served.values())


def _on_pool(
    work_pool: str | None, env: dict[str, str] | None, command: str | None = None
) -> dict[str, Any]:
    """What makes a deployment the work pool's: none without one."""
    if work_pool is None:
        return {}
    from prefect.deployments.runner import EntrypointType

    return {
        "work_pool_name": work_pool,
        "job_variables": {"env": dict(env or {}), **({"command": command} if command else {})},
        "entrypoint_type": EntrypointType.MODULE_PATH,
    }


def _batch_deployment(migration: str, tags: list[str], on_pool: dict[str, Any]) -> Any:
    """The deployment of the batches of accounts a step on the pool sends to its workers."""
    from engine.batches import batch_deployment_name
    from flows.account_batch import account_batch_flow

    return account_batch_flow.to_deployment(
        name=batch_deployment_name(migration),
        tags=tags,
        description=BATCH_DESCRIPTION.format(migration=migration),
        **on_pool,
    )


BATCH_DESCRIPTION = (
    "Not started by hand: a step of {migration} running on the work pool sends its accounts "
    "here in batches, one child flow run per batch, which any worker picks up. Each batch "
    "shows under its parent run with one task per account, and records each account's result "
    "for the parent. A batch whose worker died is sent once more; Retry the parent for the rest."
)


def offer_waves(deployment: Any, waves: list[str]) -> None:
    """Make the deployment's ``wave`` parameter a choice of the spec's waves in the UI's form.

    The flow takes any name (and refuses one the spec does not have); the form a deployment
    shows comes from its parameter schema, which Prefect builds from the flow's signature.
    """
    if not waves:
        return
    # RunnerDeployment keeps the schema it sends to the API in this attribute.
    schema = deployment._parameter_openapi_schema
    wave = schema.properties["wave"]
    wave["anyOf"] = [{"type": "string", "enum": waves}, {"type": "null"}]


def runbook_lines(spec_path: str | Path) -> list[str]:
    """What to run, in which order, in the UI; and the shell commands that show the same."""
    migration = load_spec(spec_path).name

    def name(step: str) -> str:
        return f"'{deployment_name(step, migration)}'"

    return [
        "In the UI, Deployments, in this order:",
        f"  {name('centralize')}: the whole runbook in one run, wave by wave; it pauses for "
        "each approval (open the run, press Resume, fill in the form) and for the bake period "
        "(bake-watch resumes it); Retry continues where it stopped; its status artifact says "
        "where every wave stands",
        "  or one step at a time:",
        f"  {name('inventory')} -> {name('mapping')} -> {name('key-scan')} -> "
        f"{name('workloads')} -> {name('usage')} -> {name('plan')} -> "
        f"{name('plan-and-approve')} (Resume the paused run to decide) -> {name('apply')} -> "
        f"{name('verify')} -> {name('notify')} -> {name('apply')} (stage disable) -> "
        f"{name('bake-watch')} (daily) -> {name('apply')} (stage delete)",
        f"  {name('rollback')} undoes an apply run; a failed run: fix the cause, press Retry",
        "From a shell (state only, no AWS needed):",
        f"  iamc runs -c {spec_path}            every run, its status and next step",
        f"  iamc status RUN_ID -c {spec_path}   per account: done, adopted, pending, failed, "
        "refused, with the reasons",
    ]


def serve_deployments(spec_path: str | Path) -> None:
    """Serve until interrupted; each flow run runs in a process of its own (``prefect.serve``).

    Flow runs log at INFO to the API, so the UI's Logs tab tells the story per account; the
    console of this process stays quiet (``iamc`` sets Prefect's console handler).
    """
    # Inherited by the flow runs' processes, which read it when they start.
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    # Heartbeats as often as on a work pool: `iamc deploy`'s automation marks a run of the
    # migration silent for longer than [prefect] crashed_after_seconds as Crashed.
    from iamc.automations import heartbeat_env

    os.environ.update(heartbeat_env(load_spec(spec_path).prefect.heartbeat_seconds))
    # Deferred: Prefect reads that setting when imported.
    from prefect import serve

    items = deployments(spec_path)
    log.info("serving %d deployments", len(items))
    serve(*items, print_starting_message=True)


def wait_healthy(api_url: str, timeout: float = 60.0) -> None:
    """Wait for a Prefect API to answer its health check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as reply:  # noqa: S310
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise ServeError(f"the Prefect server at {api_url} did not become healthy in {timeout:.0f} s")


def start_server(
    port: int | socket.socket, home: Path, health_timeout: float = 90.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a Prefect server on 127.0.0.1:port (0: a free one) with its own home; return it
    and its API.

    The server ends with this process, however this one ends (even by SIGKILL).

    Raises:
        ServeError: It did not answer its health check within ``health_timeout`` seconds.
    """
    process, api_url = spawn_server(port, home, exit_with_parent=True)
    try:
        wait_healthy(api_url, timeout=health_timeout)
    except ServeError:
        stop_process(process)
        raise
    return process, api_url


# uvicorn's default backlog (it listens on the socket again, with its own).
SERVER_BACKLOG = 2048


def local_listener(port: int = 0) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:port (0: a free port), for :func:`spawn_server`.

    Raises:
        OSError: ``port`` is in use.
    """
    listener = socket.socket()
    try:
        # As uvicorn binds (a port a server just left, in TIME_WAIT, is free), and listening
        # at once: on Linux two sockets may share a port with SO_REUSEADDR until one listens.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(SERVER_BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def spawn_server(
    port: int | socket.socket,
    home: Path,
    *,
    record_home: Path | None = None,
    exit_with_parent: bool = False,
) -> tuple[subprocess.Popen[bytes], str]:
    """Launch a Prefect server (:mod:`iamc.prefect_api_server`) on 127.0.0.1:port (0: a free
    port; or a :func:`local_listener`, handed over) with its own home and session; don't wait.

    The port is bound here and the socket handed to the server: a port only probed as free
    could be taken before the server binds it, by another server starting at the same moment,
    whose health check would then pass for this one's (found in the test suite: two step
    commands of two Prefect homes, the second one's server dead on arrival).

    It ends by itself when idle (``IAMC_PREFECT_SERVER_IDLE_MINUTES``) or when ``home`` is
    gone, removing the local server's record in ``record_home`` if given; with
    ``exit_with_parent``, also when this process ends.

    Raises:
        OSError: ``port`` is in use.
    """
    with port if isinstance(port, socket.socket) else local_listener(port) as listener:
        port = listener.getsockname()[1]
        api_url = f"http://127.0.0.1:{port}/api"
        env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Without these the UI's pages call the API on port 4200 (AWS_FACTS, Prefect).
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": api_url,
        }
        env.pop("PREFECT_API_URL", None)
        home.mkdir(parents=True, exist_ok=True)
        with (home / "server.log").open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
                [
                    sys.executable,
                    "-m",
                    "iamc.prefect_api_server",  # `prefect server start`, busy database retried
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--fd",
                    str(listener.fileno()),
                    *(["--record-home", str(record_home)] if record_home is not None else []),
                    *(["--exit-with-parent"] if exit_with_parent else []),
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(listener.fileno(),),
            )
    return process, api_url


def exit_on_sigterm() -> None:
    """SIGTERM ends this process as Ctrl-C or ``sys.exit`` would: ``finally`` blocks, context
    managers and ``atexit`` handlers run, so the servers, sandboxes and workers it started are
    stopped (by default SIGTERM ends the process at once and leaves them running)."""

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def stop_process(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=timeout)
