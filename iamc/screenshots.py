"""`make screenshots`: the README's pictures of the UI, taken from a real run, not drawn.

Starts a seeded sandbox AWS, a local Prefect server and the runbook's deployments, runs
``centralize`` until it pauses for the change board (screenshot 1: the paused run), injects a
failed account assignment, approves through the API as the form would, and lets the apply fail
(screenshot 2: the failed run's per-account table). Needs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from prefect.flow_runs import resume_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from console.operator import artifact_key, deployment_name
from engine.migration import Migration
from engine.progress import migration_progress
from iamc.serve import start_server, stop_process
from sandbox.control import SandboxControl
from sandbox.demo_spec import DEMO_SPEC
from sandbox.seed import seed_organization
from sandbox.server import Sandbox

SPEC_NAME = "acme-wave-1"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=20000",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(check: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise TimeoutError(f"timed out waiting for {what}")


def screenshot(url: str, path: Path, size: str = "1400,900") -> Path:
    """A PNG of ``url`` by headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(  # noqa: S603 - a fixed browser and arguments
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={path}",
                f"--window-size={size}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    return path


def take(out_dir: Path, workdir: Path) -> list[Path]:
    """Run the scenario and write the PNGs into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    spec = workdir / "spec.toml"
    spec.write_text(DEMO_SPEC.replace('name = "demo"', f'name = "{SPEC_NAME}"'))
    with Sandbox(port=0) as sandbox:
        sandbox.reset(seed=7)
        os.environ.update(sandbox.env())
        seed_organization(
            boto3.Session(),
            accounts=3,
            users_per_account=8,
            seed=7,
            samples_dir=workdir / "samples",
            endpoint_url=sandbox.url,
        )
        port = _free_port()
        server, api_url = start_server(port, workdir / "prefect-server")
        env = {**os.environ, "PREFECT_API_URL": api_url}
        serve = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", "iamc.cli", "serve", "-c", str(spec)],
            env=env,
            stdout=(workdir / "serve.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with (
                temporary_settings({PREFECT_API_URL: api_url}),
                get_client(sync_client=True) as client,
            ):
                return _run_and_capture(
                    client, spec, sandbox.url, f"http://127.0.0.1:{port}", out_dir
                )
        finally:
            stop_process(serve)
            stop_process(server)


def _run_and_capture(
    client: Any, spec: Path, sandbox_url: str, ui: str, out_dir: Path
) -> list[Path]:
    """Run ``centralize`` to its approval pause, then to a failed apply; a screenshot of each."""

    def deployment() -> Any:
        try:
            return client.read_deployment_by_name(
                f"centralize/{deployment_name('centralize', SPEC_NAME)}"
            )
        except Exception:  # not registered yet
            return None

    found = _wait(deployment, "the deployments", 120)
    run = client.create_flow_run_from_deployment(found.id)

    def state(*names: str) -> Any:
        current = client.read_flow_run(run.id)
        kind = current.state.type.value if current.state else ""
        return current if kind in names else None

    _wait(lambda: state("PAUSED", "FAILED", "CRASHED"), "the approval pause")
    time.sleep(3)  # the run's last log lines reach the API
    taken = [screenshot(f"{ui}/runs/flow-run/{run.id}", out_dir / "ui-paused-approval.png")]
    _approve_into_a_failed_apply(run.id, spec, sandbox_url)
    _wait(lambda: state("FAILED", "COMPLETED", "CRASHED"), "the failed apply")
    time.sleep(3)
    key = artifact_key(SPEC_NAME, "apply-provision")
    artifact = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )[0]
    taken.append(
        screenshot(
            f"{ui}/artifacts/artifact/{artifact.id}",
            out_dir / "ui-failed-apply-per-account.png",
            size="1600,700",
        )
    )
    return taken


def _approve_into_a_failed_apply(run_id: Any, spec: Path, sandbox_url: str) -> None:
    """Make the next account assignment fail, then approve the paused run as the form would."""
    SandboxControl(sandbox_url).fail_next_assignment(
        "*",
        "*",
        "ConflictException: Request to create an assignment conflicts with a "
        "pending operation (injected by the screenshot script)",
    )
    resume_flow_run(
        run_id,
        run_input={
            "approver": "change-board@acme.example",
            "ticket": "CHG-2041",
            "decision": "approve",
            "stage": "provision",
            # The reviewer types the hash they read: the form does not prefill it.
            "plan_hash": Migration.call(migration_progress, str(spec)).plan_hash,
            "comment": "reviewed in the CAB of Tuesday",
        },
    )


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")
    for path in take(out, Path(".iamc/screenshots")):
        print(path)


if __name__ == "__main__":
    main()
