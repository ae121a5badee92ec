"""The ``iamc export`` group: hand what the migration made to another tool (Terraform,
CloudFormation)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from engine.export import ExportResult, export
from engine.migration import Migration
from iamc.commands.common import SpecOption
from iamc.consoles import console, err_console

export_app = typer.Typer(
    help="Write what the migration created or adopted as another tool's configuration.",
    no_args_is_help=True,
)


class ExportFormat(StrEnum):
    TERRAFORM = "terraform"
    CLOUDFORMATION = "cloudformation"


OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", help="Directory to write to (default: .iamc/<migration>/<format> by the spec)."
    ),
]


@export_app.command("terraform")
def terraform(
    spec: SpecOption,
    out: OutOption = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", help="terraform (.tf files) or cloudformation (templates)."),
    ] = ExportFormat.TERRAFORM,
) -> None:
    """Write .tf files with import blocks for what the migration created or adopted, read live.

    Permission sets with their inline, AWS-managed and customer-managed policies and tags,
    account assignments, and the replace stage's workload roles (with one aliased provider per
    member account), each with a Terraform >= 1.5 ``import {}`` block, so ``terraform plan``
    imports them and shows no change. ``--format cloudformation`` writes the same as
    ``iamc export cloudformation``. Exits 2 when the migration has applied nothing yet, or the
    spec's target is central-roles (Identity Center only for now).
    """
    _run(spec, out, fmt)


@export_app.command("cloudformation")
def cloudformation(spec: SpecOption, out: OutOption = None) -> None:
    """Write CloudFormation templates with import files for what the migration made, read live.

    ``identity-center.json`` (permission sets and assignments, for the Identity Center admin
    account) and one ``member-ACCOUNT.json`` per member account with workload roles, each with
    its ``.import.json`` for ``aws cloudformation create-change-set --change-set-type IMPORT``
    and every resource retained on delete; README.md has the commands. Exits 2 when the
    migration has applied nothing yet, or the spec's target is central-roles.
    """
    _run(spec, out, ExportFormat.CLOUDFORMATION)


def _run(spec: Path, out: Path | None, fmt: ExportFormat) -> None:
    with Migration.open(spec) as mig:
        result: ExportResult = export(mig, fmt.value, out)
    for kind, count in sorted(result.counts.items()):
        console.print(f"{count:5d}  {kind}", highlight=False)
    for note in result.notes:
        err_console.print(f"left out: {note}", style="yellow", highlight=False)
    console.print(f"written to {result.out_dir}: {', '.join(sorted(result.files))}")


app = typer.Typer()
app.add_typer(export_app, name="export")
