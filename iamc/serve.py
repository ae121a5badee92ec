"""Serve the runbook's flows as Prefect deployments, so operators start, watch and retry them.

A failed run can only be retried from the UI ("Retry") if it came from a deployment, and a retry
re-runs the flow from the top on the same run id (AWS_FACTS, Prefect): every flow served here is
safe to re-run because it continues from the state store's journal.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from domain.errors import ServeError
from domain.spec import load_spec

log = logging.getLogger(__name__)


def deployments(spec_path: str | Path) -> list[Any]:
    """The deployments of one migration spec, with the spec's path as their default parameter."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.apply import apply_flow, rollback_flow
    from flows.bake import bake_watch_flow
    from flows.inventory import inventory_flow
    from flows.key_scan import key_scan_flow
    from flows.mapping import mapping_flow
    from flows.plan import plan_and_approve, plan_flow
    from flows.restore import restore_flow

    spec = load_spec(spec_path)
    path = str(Path(spec_path).resolve())
    tags = ["iam-centralize", f"migration:{spec.name}"]
    inventory = inventory_flow.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=spec.inventory.concurrency)
    )
    return [
        inventory.to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
        mapping_flow.to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
        key_scan_flow.with_options(
            task_runner=ThreadPoolTaskRunner(max_workers=spec.scan.concurrency)
        ).to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
        plan_flow.to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
        plan_and_approve.to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
        apply_flow.to_deployment(
            name=spec.name, parameters={"spec_path": path, "stage": "provision"}, tags=tags
        ),
        rollback_flow.to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
        # The bake watch runs daily (07:00 UTC): evidence of use is in the table by morning.
        bake_watch_flow.to_deployment(
            name=spec.name, parameters={"spec_path": path}, tags=tags, cron="0 7 * * *"
        ),
        restore_flow.to_deployment(name=spec.name, parameters={"spec_path": path}, tags=tags),
    ]


def serve_deployments(spec_path: str | Path) -> None:
    """Serve until interrupted, running flow runs in this process (``prefect.serve``)."""
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


def start_server(port: int, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``prefect server start`` on 127.0.0.1:port with its own home; return it and its API."""
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
    log_file = (home / "server.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(api_url, timeout=90)
    except ServeError:
        stop_process(process)
        raise
    return process, api_url


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
