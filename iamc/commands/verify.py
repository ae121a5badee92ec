"""The verify step's command: ``iamc verify``."""

from __future__ import annotations

from typing import Annotated

import typer

from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from iamc.commands.common import SpecOption, report_to_prefect
from iamc.consoles import console

app = typer.Typer()


@app.command("verify")
def verify(
    spec: SpecOption,
    plan_id: Annotated[
        int | None, typer.Argument(help="The provisioned plan; default: the latest plan.")
    ] = None,
) -> None:
    """Check that each migrated person's new access landed, and that nobody lost what they used.

    Reads only: per account, the plan's assignments exist, each AWSReservedSSO_ role has its
    set's policies and permissions boundary, and nobody has less than their IAM user had but
    for what least privilege trimmed, which is replayed instead (every action they used in the
    window through SimulatePrincipalPolicy on their new role). For a central-roles plan: per
    person and member role, its live trust policy names them (with MFA) and nobody outside
    the central account's users and roles, SimulatePrincipalPolicy says their own policies
    allow the switch, and (IAM users) they have an MFA device. Exit 1 naming each problem.
    """
    report_to_prefect()
    # Deferred: the flow imports Prefect, which reads its settings at import.
    with imports_without_gc():
        from flows.verify import verify_flow

    with Migration.open(spec), console.status("[bold]verify[/] reading IAM (and Identity Center)"):
        summary = verify_flow(str(spec), plan_id)
    console.print(
        f"verify run {summary['run_id']} of plan {summary['plan_id']}: {summary['people']} "
        f"people in {summary['accounts']} account(s), {summary['checked']} check(s), "
        f"{summary['problems']} problem(s)",
        highlight=False,
    )
