"""What the command modules share: the spec and profile options, and reporting to Prefect."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from domain.spec import load_spec
from engine.prefect_runtime import imports_without_gc, prepare_flow_runs
from iamc.consoles import err_console

ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="AWS profile of the management account (default: boto3 chain)."),
]


def valid_spec(spec: Path | None) -> Path | None:
    """Load the spec as its option is parsed, before the command starts anything.

    A typo is then one error line (SpecError, exit 2) within the CLI's own start-up, not
    after a Prefect server started, Prefect and boto3 were imported and a progress display
    was drawn. The command still passes the path on (flows take a path, deployments too).
    """
    if spec is not None:
        load_spec(spec)
    return spec


SpecOption = Annotated[
    Path,
    typer.Option(
        "--spec",
        "-c",
        help="The migration spec (TOML).",
        show_default=False,
        callback=valid_spec,
    ),
]
# Of a command group that also has subcommands (plan, scan, bake): required only when it runs.
GroupSpecOption = Annotated[
    Path | None,
    typer.Option("--spec", "-c", help="The migration spec (TOML).", callback=valid_spec),
]


def required_spec(spec: Path | None) -> Path:
    """The spec of a group command run without a subcommand, where it is required."""
    if spec is None:
        raise typer.BadParameter("missing option --spec / -c", param_hint="--spec")
    return spec


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def report_to_prefect() -> None:
    """Flows of this command report to the local Prefect server (started once, then reused),
    recorded as they start and end with nothing that only costs time (engine.prefect_runtime)."""
    # Deferred: the server's client needs urllib.request and ssl (~25 ms), which the read-only
    # commands beside the step commands never do.
    from iamc.prefect_server import use_local_server

    use_local_server(err_console)
    with imports_without_gc():
        prepare_flow_runs()
