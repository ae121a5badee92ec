"""The identity mapping step's commands: ``iamc map`` and ``iamc report mapping``."""

from __future__ import annotations

from typing import Annotated

import typer

from iamc.commands.common import ProfileOption, ReportFormat, SpecOption, report_to_prefect
from iamc.consoles import console
from iamc.views.mapping import mapping_report, mapping_with_status

app = typer.Typer()
report = typer.Typer()


@app.command("map")
def map_identities(spec: SpecOption, profile: ProfileOption = None) -> None:
    """Map the latest inventory's human IAM users and groups to Identity Center identities.

    With target = "central-roles": to the central account's IAM users (or the roles its IdP
    federates into), by the same rules; there are no groups to map to.
    """
    report_to_prefect()
    mapping_with_status(console, spec, profile)
    console.print(f"next: iamc report mapping -c {spec} --unmatched", style="dim")


@report.command("mapping")
def report_mapping(
    spec: SpecOption,
    unmatched: Annotated[
        bool, typer.Option("--unmatched", help="Only unmatched and ambiguous users and groups.")
    ] = False,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = ReportFormat.table,
) -> None:
    """Per IAM user: the identity it maps to and the rule, or why not (csv: for the IdP team)."""
    mapping_report(console, spec, unmatched, output_format.value)
