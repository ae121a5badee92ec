"""`make ui`: a local Prefect server and UI, the runbook served to it, and optionally a sandbox."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
from rich.console import Console

from domain.errors import ServeError
from iamc.serve import (
    exit_on_sigterm,
    local_listener,
    runbook_lines,
    serve_deployments,
    start_server,
    stop_process,
)
from sandbox.demo_spec import DEMO_SPEC
from sandbox.seed import seed_organization
from sandbox.server import Sandbox


def run_ui(
    console: Console, *, spec: Path | None, port: int, with_sandbox: bool, workdir: Path
) -> None:
    """Serve until Ctrl-C or SIGTERM; stops the deployments before the server (or its
    shutdown hangs), then the sandbox."""
    exit_on_sigterm()
    try:  # taken before anything starts: a port in use is refused with nothing to stop
        listener = local_listener(port)
    except OSError as err:
        raise ServeError(
            f"port {port} on 127.0.0.1 is in use ({err.strerror}): pick another with --port"
        ) from err
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    sandbox = None
    if with_sandbox:
        sandbox = Sandbox(port=0)
        sandbox.start()
        sandbox.reset(seed=7)
        os.environ.update(sandbox.env())
        with console.status("seeding a sandbox organization…"):
            seed_organization(boto3.Session(), endpoint_url=sandbox.url)
        console.print(f"sandbox AWS at {sandbox.url}", highlight=False)
    if spec is None:
        spec = workdir / "spec.toml"
        spec.write_text(DEMO_SPEC)
        for stale in workdir.glob("state.db*"):
            stale.unlink()
    server, api_url = start_server(listener, workdir / "prefect-server")
    os.environ["PREFECT_API_URL"] = api_url
    console.print(
        f"Prefect UI: {api_url.removesuffix('/api')}  (deployments of {spec}; Ctrl-C stops)",
        highlight=False,
    )
    for line in runbook_lines(spec):
        console.print(line, highlight=False, soft_wrap=True)
    try:
        serve_deployments(spec)
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(server)
        if sandbox is not None:
            sandbox.stop()
