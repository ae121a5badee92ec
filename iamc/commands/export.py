"""The ``iamc export`` group: hand what the migration made to another tool (Terraform)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.migration import Migration
from engine.terraform_export import export_terraform
from iamc.commands.common import SpecOption
from iamc.consoles import console, err_console

export = typer.Typer(
    help="Write what the migration created or adopted as another tool's configuration.",
    no_args_is_help=True,
)


@export.command("terraform")
def terraform(
    spec: SpecOption,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Directory for the .tf files (default: .iamc/<migration>/terraform)."
        ),
    ] = None,
) -> None:
    """Write .tf files with import blocks for what the migration created or adopted, read live.

    Permission sets with their inline, AWS-managed and customer-managed policies, account
    assignments, and the replace stage's workload roles (with one aliased provider per member
    account), each with a Terraform >= 1.5 ``import {}`` block, so ``terraform plan`` imports
    them and shows no change. Exits 2 when the migration has applied nothing yet.
    """
    with Migration.open(spec) as mig:
        result = export_terraform(mig, out)
    for kind, count in sorted(result.counts.items()):
        console.print(f"{count:5d}  {kind}", highlight=False)
    for note in result.notes:
        err_console.print(f"left out: {note}", style="yellow", highlight=False)
    console.print(f"written to {result.out_dir}: {', '.join(sorted(result.files))}")


app = typer.Typer()
app.add_typer(export, name="export")
