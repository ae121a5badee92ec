"""The retire steps' commands: ``iamc bake`` (and ``bake decide``) and ``iamc restore``."""

from __future__ import annotations

from typing import Annotated

import typer

from domain.retire import Decision
from engine.bake_evidence import decide
from iamc.commands.common import GroupSpecOption, SpecOption, report_to_prefect, required_spec
from iamc.consoles import console
from iamc.views.retire import bake_with_table, print_decision, restore_with_listing

app = typer.Typer()
bake_app = typer.Typer(
    help="The bake period: look for use of disabled users (default), or record a decision.",
    invoke_without_command=True,
)
app.add_typer(bake_app, name="bake")


@bake_app.callback()
def bake(
    ctx: typer.Context,
    spec: GroupSpecOption = None,
    no_lookup: Annotated[
        bool, typer.Option("--no-lookup", help="Only report what is recorded; read no AWS.")
    ] = False,
) -> None:
    """Look for attempted use of every disabled user (CloudTrail, key last use); show who is
    baking, ready, in use (who/when/where), kept or re-enabled. Exit 3 if any is in use."""
    if ctx.invoked_subcommand is not None:
        return
    spec = required_spec(spec)
    if not no_lookup:
        report_to_prefect()
    report = bake_with_table(console, spec, collect=not no_lookup)
    if report["counts"].get("in-use"):
        raise typer.Exit(3)


@bake_app.command("decide")
def bake_decide(
    user: Annotated[str, typer.Argument(help="ACCOUNT/NAME of a disabled user.")],
    spec: SpecOption,
    by: Annotated[str, typer.Option("--by", help="Who decides (name or e-mail).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")],
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the user (never delete it in this plan).")
    ] = False,
) -> None:
    """Record a decision about a user with evidence of use: delete it anyway, or --keep it."""
    print_decision(
        console,
        decide(
            spec, user, by=by, reason=reason, decision=Decision.KEEP if keep else Decision.DELETE
        ),
    )


@app.command("restore")
def restore(
    spec: SpecOption,
    user: Annotated[
        str | None, typer.Argument(help="ACCOUNT/NAME of a deleted user.", show_default=False)
    ] = None,
    run_id: Annotated[
        int | None, typer.Option("--run", help="Every user this delete run deleted.")
    ] = None,
) -> None:
    """Re-create deleted users from their snapshots as far as AWS allows; list the rest.

    What can't come back is printed: access key secrets, the password, MFA devices,
    resource-policy grants. Access keys are never created.
    """
    report_to_prefect()
    restore_with_listing(console, spec, user, run_id)
