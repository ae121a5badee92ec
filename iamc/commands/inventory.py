"""The inventory step's commands: ``iamc inventory``, ``iamc report inventory`` and ``waves``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from iamc.commands.common import ProfileOption, ReportFormat, SpecOption, report_to_prefect
from iamc.consoles import console
from iamc.views.inventory import (
    inventory_with_progress,
    print_inventory_report,
    print_waves_report,
)

app = typer.Typer()
report = typer.Typer()


@app.command("inventory")
def inventory(spec: SpecOption, profile: ProfileOption = None) -> None:
    """Inventory the IAM users of every in-scope member account into a new snapshot."""
    report_to_prefect()
    inventory_with_progress(console, spec, profile)
    console.print(f"next: iamc report inventory -c {spec}", style="dim")


class InventoryFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    asff = "asff"


@report.command("inventory")
def report_inventory(
    spec: SpecOption,
    output_format: Annotated[
        InventoryFormat,
        typer.Option(
            "--format",
            "-f",
            help="table, json, csv, or asff (AWS Security Hub findings: one per account).",
        ),
    ] = InventoryFormat.table,
    send: Annotated[
        bool,
        typer.Option(
            "--import",
            help="With --format asff: import the findings into Security Hub in the management "
            "account (BatchImportFindings) instead of printing them.",
        ),
    ] = False,
    profile: ProfileOption = None,
) -> None:
    """Per account: users by class, key activity, console users without MFA, CIS 1.21 verdict."""
    if send and output_format != InventoryFormat.asff:
        raise typer.BadParameter("--import needs --format asff", param_hint="--import")
    print_inventory_report(console, spec, output_format.value, send=send, profile=profile)


@report.command("waves")
def report_waves(
    spec: SpecOption,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = ReportFormat.table,
) -> None:
    """Per wave: accounts, users migrated, disabled, deleted, CIS 1.21 verdicts, what is pending."""
    print_waves_report(console, spec, output_format.value)
