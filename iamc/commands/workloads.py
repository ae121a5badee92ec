"""The workloads step's commands: ``iamc workloads`` and ``iamc report workloads``."""

from __future__ import annotations

from typing import Annotated

import typer

from domain.errors import WorkloadsIncomplete
from engine.migration import Migration
from iamc.commands.common import ProfileOption, ReportFormat, SpecOption, report_to_prefect
from iamc.consoles import console, err_console
from iamc.views.workloads import print_workloads_report, workloads_with_progress

app = typer.Typer()
report = typer.Typer()

FormatOption = Annotated[
    ReportFormat,
    typer.Option("--format", "-f", help="table, json or csv (one row per access key)."),
]


@app.command("workloads")
def workloads(
    spec: SpecOption,
    profile: ProfileOption = None,
    output_format: FormatOption = ReportFormat.table,
) -> None:
    """Find where each workload user's keys are used from, and the runtime that holds them.

    Reads CloudTrail, the keys' last-used data and the key scan's findings (nothing in AWS
    changes), stores the placements and prints them; key ids masked. Exit 4 when an account
    could not be read (the rest is stored, the account keeps its earlier placements), as an
    incomplete inventory does.
    """
    report_to_prefect()
    # JSON and CSV go to stdout alone (to be piped); what a person watches goes to stderr.
    talk = console if output_format == ReportFormat.table else err_console
    # Opened once: the flow run and the report below share the spec's load and the store.
    with Migration.open(spec):
        summary = workloads_with_progress(talk, spec, profile)
        print_workloads_report(console, spec, output_format.value)
    failed = summary["accounts_failed"]
    if failed:
        raise WorkloadsIncomplete(
            f"workloads run {summary['run_id']} is incomplete: account(s) "
            + "; ".join(f"{account} ({why})" for account, why in failed.items())
            + f" could not be read; fix the cause and run 'iamc workloads -c {spec}' again"
        )
    talk.print(f"next: iamc plan -c {spec}", style="dim")


@report.command("workloads")
def report_workloads(spec: SpecOption, output_format: FormatOption = ReportFormat.table) -> None:
    """Where each workload user's keys are used from, as last stored (key ids masked)."""
    print_workloads_report(console, spec, output_format.value)
