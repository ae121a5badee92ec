"""The local Prefect server's commands: ``iamc server start|status|stop`` and ``iamc serve``."""

from __future__ import annotations

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
