"""The plan step's commands: ``iamc plan`` (and ``show``, ``verify``) and ``iamc approve``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.approvals import record_decision
from engine.migration import Migration
from iamc.commands.common import GroupSpecOption, SpecOption, report_to_prefect, required_spec
from iamc.consoles import console
from iamc.views.plan import plan_with_summary, show_plan, verify_plan_file

app = typer.Typer()
plan_app = typer.Typer(
    help="Compute the dry-run plan (default), or show a stored one.", invoke_without_command=True
)
app.add_typer(plan_app, name="plan")


@plan_app.callback()
def plan(
    ctx: typer.Context,
    spec: GroupSpecOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Where to write plan.md, plan.json, assignments.csv.")
    ] = None,
    wave: Annotated[
        str | None, typer.Option("--wave", help="The wave to plan (specs with [[waves]]).")
    ] = None,
) -> None:
    """Compute the plan from the latest inventory and mapping; exit 2 if it has blocking errors."""
    if ctx.invoked_subcommand is not None:
        return
    spec = required_spec(spec)
    report_to_prefect()
    result = plan_with_summary(console, spec, out, wave)
    if result["blocking"]:
        raise typer.Exit(2)


@plan_app.command("show")
def plan_show(
    plan_id: Annotated[int, typer.Argument(help="The plan's id (iamc plan prints it).")],
    spec: SpecOption,
    output_format: Annotated[str, typer.Option("--format", "-f", help="markdown or json.")] = (
        "markdown"
    ),
) -> None:
    """Print a stored plan with its approval status."""
    show_plan(console, spec, plan_id, output_format)


@plan_app.command("verify")
def plan_verify(
    path: Annotated[Path, typer.Argument(help="A plan.json written by 'iamc plan'.")],
    spec: SpecOption,
) -> None:
    """Check that a plan.json is the stored plan, content and hash; show its approvals.

    Exits 1 and names what differs when the file was edited (or the stored plan changed).
    """
    verify_plan_file(console, spec, path)


@app.command("approve")
def approve(
    plan_id: Annotated[int, typer.Argument(help="The plan's id.")],
    spec: SpecOption,
    by: Annotated[str, typer.Option("--by", help="Who approves (name or e-mail).")],
    ticket: Annotated[str, typer.Option("--ticket", help="The change ticket.")],
    plan_hash: Annotated[
        str,
        typer.Option(
            "--hash", help="The plan hash the reviewer read in plan.md (at least 12 characters)."
        ),
    ],
    stage: Annotated[
        str,
        typer.Option(
            help="Required, no default: provision, disable, all (provision and disable) or "
            "delete (irreversible: approved only on its own, with --deletes)."
        ),
    ],
    deletes: Annotated[
        int | None,
        typer.Option(
            "--deletes",
            min=0,
            help="Approving --stage delete: how many IAM users it deletes (plan.md says); a "
            "wrong number is refused.",
        ),
    ] = None,
    comment: str = "",
    reject: Annotated[bool, typer.Option("--reject", help="Record a rejection instead.")] = False,
) -> None:
    """Record who approved which plan hash, for which stage, and when.

    Every decision names its stage. Delete is approved on its own, quoting the number of IAM
    users it deletes; an approval of "all" (provision and disable) never covers it.
    """
    meta = Migration.call(
        record_decision,
        spec,
        plan_id,
        approver=by,
        ticket=ticket,
        decision="rejected" if reject else "approved",
        stage=stage,
        expected_hash=plan_hash,
        comment=comment,
        deletes=deletes,
    )
    latest = meta["approvals"][-1]
    quoted = f" ({deletes} IAM users to delete)" if stage == "delete" and not reject else ""
    console.print(
        f"plan {plan_id} ({meta['hash'][:12]}): stage {latest['stage']}{quoted} "
        f"{latest['decision']} by {latest['approver']}, ticket {latest['ticket']}, at "
        f"{latest['at']}",
        highlight=False,
    )
