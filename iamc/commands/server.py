"""The local Prefect server's commands: ``iamc server start|status|stop`` and ``iamc serve``."""

from __future__ import annotations

from pathlib import Path

import typer

from iamc import prefect_server
from iamc.commands.common import SpecOption
from iamc.consoles import console, err_console
from iamc.serve import serve_deployments

app = typer.Typer()
server_app = typer.Typer(
    help="The local Prefect server the step commands report to (started by the first).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@app.command("serve")
def serve(spec: SpecOption) -> None:
    """Serve the runbook's flows as Prefect deployments (start, watch and Retry them in the UI).

    Talks to the Prefect API named by PREFECT_API_URL; runs the flow runs in this process.
    """
    serve_deployments(spec)


@app.command("deploy")
def deploy(
    spec: SpecOption,
    work_pool: str | None = typer.Option(
        None, "--work-pool", help="The process work pool (default: the spec's [prefect] work_pool)."
    ),
    worker_python: str | None = typer.Option(
        None,
        "--worker-python",
        help="The Python with iamc installed that workers run flow runs with, the same path on "
        "every worker (default: this one).",
    ),
) -> None:
    """Register the runbook's deployments on a Prefect work pool, run by its workers.

    `prefect worker start --pool NAME` on any machine runs them, each step's accounts spread
    over the workers. Talks to the Prefect API named by PREFECT_API_URL. The state must be
    PostgreSQL.
    """
    from iamc.deploy import deploy as register

    done = register(spec, work_pool, worker_python)
    made = "created" if done.created_pool else "existing"
    console.print(f"work pool {done.pool!r} ({made}, process): {len(done.deployments)} deployments")
    for name in done.deployments:
        console.print(f"  {name}")
    for name in done.automations:
        console.print(f"  automation: {name}")
    console.print(
        f"Start workers (on any machine with iamc installed in {done.python}, the spec at "
        f"{Path(spec).resolve()} and PREFECT_API_URL set): prefect worker start --pool "
        f"{done.pool!r}"
    )


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server now (the first step command otherwise does)."""
    server = prefect_server.running() or prefect_server.start(err_console)
    console.print(f"Prefect server: {server.ui_url} (API {server.api_url}, pid {server.pid})")


@server_app.command("status")
def server_status() -> None:
    """Whether the local Prefect server runs, and where its UI is; exit 1 if it does not."""
    server = prefect_server.running()
    if server is None:
        console.print("no local Prefect server runs; the next step command starts one")
        raise typer.Exit(1)
    console.print(f"Prefect server: {server.ui_url} (API {server.api_url}, pid {server.pid})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server (runs stay in its database for the next start)."""
    stopped = prefect_server.stop()
    console.print(f"stopped the Prefect server (pid {stopped.pid})" if stopped else "none ran")
