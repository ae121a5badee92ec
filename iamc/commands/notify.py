"""The notify step's command: ``iamc notify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from iamc.commands.common import SpecOption, report_to_prefect
from iamc.consoles import console

app = typer.Typer()


@app.command("notify")
def notify(
    spec: SpecOption,
    plan_id: Annotated[
        int | None, typer.Argument(help="The provisioned plan; default: the latest plan.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write them; default: [notify] out_dir / plan id."),
    ] = None,
) -> None:
    """Write each person's notice: what changes, when, how they sign in now; send nothing.

    Per person a Markdown message and an .eml, and notices.csv for mail merge: the access
    portal (Identity Center), or for a central-roles plan each account's switch-role link and
    an ~/.aws/config profile; the dates their old IAM users are disabled and deleted.
    """
    report_to_prefect()
    # Deferred: the flow imports Prefect, which reads its settings at import.
    with imports_without_gc():
        from flows.notify import notify_flow

    with Migration.open(spec), console.status("[bold]notify[/] writing the notices"):
        summary = notify_flow(str(spec), plan_id, str(out) if out else None)
    console.print(
        f"notify run {summary['run_id']} of plan {summary['plan_id']}: {summary['people']} "
        f"people, notices in {summary['out_dir']} (mail merge: {summary['csv']}); nothing was "
        f"sent. Old IAM users disabled on {summary['disable_on']}, deleted on "
        f"{summary['delete_on']}.",
        highlight=False,
    )
    if summary.get("held_back"):
        console.print(
            f"[yellow]{summary['held_back']} notice(s) held back: their accounts failed "
            "(see notices.csv)[/]",
            highlight=False,
        )
