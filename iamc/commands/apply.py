"""The apply step's commands: ``iamc apply``, ``resume``, ``rollback``, and ``runs``, ``status``."""

from __future__ import annotations

from typing import Annotated

import typer

from iamc.commands.common import SpecOption, report_to_prefect
from iamc.consoles import console
from iamc.views.apply import (
    apply_with_progress,
    print_runs,
    print_status,
    resume_with_progress,
    rollback_with_listing,
)

app = typer.Typer()


@app.command("apply")
def apply(
    plan_id: Annotated[int, typer.Argument(help="The approved plan's id.")],
    spec: SpecOption,
    stage: Annotated[str, typer.Option(help="provision, disable or delete.")] = "provision",
) -> None:
    """Apply one stage of an approved plan, journaled: a resume continues where it stopped.

    disable: credentials Inactive and the quarantine policy on (reversible); delete: after
    the bake period, with a snapshot first (irreversible; see iamc restore).
    """
    report_to_prefect()
    apply_with_progress(console, spec, plan_id, stage)


@app.command("runs")
def runs(spec: SpecOption) -> None:
    """List the migration's runs (inventory, plan, apply, rollback) with their status."""
    print_runs(console, spec)


@app.command("status")
def status(
    run_id: Annotated[int, typer.Argument(help="An apply or rollback run's id.")],
    spec: SpecOption,
) -> None:
    """Per stage and account: done, pending and failed actions of a run, with the errors."""
    print_status(console, spec, run_id)


@app.command("resume")
def resume(
    run_id: Annotated[int, typer.Argument(help="The apply or rollback run to continue.")],
    spec: SpecOption,
) -> None:
    """Continue a failed or interrupted apply or rollback run; done steps are skipped."""
    report_to_prefect()
    resume_with_progress(console, spec, run_id)


@app.command("rollback")
def rollback(
    run_id: Annotated[int, typer.Argument(help="The apply run to undo.")],
    spec: SpecOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be undone.")
    ] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", help="ACCOUNT/NAME: bring back only this IAM user (disable runs)."),
    ] = None,
) -> None:
    """Undo what an apply run did; --user brings back one IAM user of a disable run.

    Assignments before permission sets; credentials back to their prior status, then the
    quarantine lifted. Adopted things stay. A delete run can't be undone: see restore.
    """
    report_to_prefect()
    rollback_with_listing(console, spec, run_id, dry_run, user)
