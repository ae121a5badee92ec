"""``iamc drift``: has what the migration made drifted, and the plan that puts it back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from domain.errors import DriftIncomplete
from domain.spec import load_spec
from engine.prefect_runtime import imports_without_gc
from iamc.commands.common import SpecOption, report_to_prefect
from iamc.consoles import console, err_console

app = typer.Typer()

# Exit codes: 0 nothing drifted (no plan stored); 3 drift found, a plan stored (as `iamc bake`
# exits 3 when it finds a disabled user in use); 4 an account could not be read (as an
# incomplete inventory, key scan or workloads run), whatever was found in the others.
FOUND = 3


@app.command("drift")
def drift(
    spec: SpecOption,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to write plan.md, plan.json, assignments.csv (a plan's files)."
        ),
    ] = None,
) -> None:
    """Compare what the migration created or adopted with AWS; plan what puts it back.

    Every permission set (inline policy, AWS- and customer-managed policies, session duration,
    description, boundary), its provisioning to each account (LATEST_PERMISSION_SET_NOT_
    PROVISIONED) and every account assignment, against the latest definition the journal
    recorded. Changes nothing in AWS. When something drifted, a plan of provision-stage actions
    is stored and written like `iamc plan`'s: approve it (`iamc approve ID --stage provision`)
    and apply it (`iamc apply ID --stage provision`) like any plan.

    Exit 0: nothing drifted, no plan stored. Exit 3: drift found, its plan stored (none when
    all of it is of sets the migration adopted: those it reports, never changes). Exit 4: an
    account could not be read (the read is partial; the plan, if any, says which). Exit 2: the
    migration has applied nothing yet, or the spec's target is central-roles (Identity Center
    only for now).
    """
    # Before the Prefect server starts: the spec was loaded (and cached) as the option parsed.
    load_spec(spec).identity_center_only("iamc drift", "drift check")
    report_to_prefect()
    with imports_without_gc():
        from flows.drift import run_drift

    with err_console.status("[bold]drift[/] reading what the migration made"):
        summary = run_drift(spec, out)
    for line in summary["findings"]:
        console.print(f"  {line}", highlight=False)
    if summary["plan_id"] is not None:
        console.print(
            f"drift run {summary['run_id']}: {summary['drift']} drift(s); plan "
            f"{summary['plan_id']} puts it back ({summary['actions']} action(s)), hash "
            f"{summary['hash']}: {summary['files'].get('markdown')}",
            highlight=False,
        )
        console.print(
            f"next: iamc approve {summary['plan_id']} -c {spec} --stage provision --hash "
            f"{summary['hash'][:12]} --by NAME --ticket ID; then iamc apply "
            f"{summary['plan_id']} -c {spec} --stage provision",
            style="dim",
            highlight=False,
        )
    elif summary["drift"]:
        console.print(
            f"drift run {summary['run_id']}: {summary['drift']} drift(s), all of sets the "
            "migration adopted: not its to put back, so no plan (restore them by hand or adopt "
            "the change)",
            highlight=False,
        )
    else:
        console.print(
            f"drift run {summary['run_id']}: nothing to put back"
            + ("" if summary["complete"] else " in the accounts read"),
            highlight=False,
        )
    if not summary["complete"]:
        raise DriftIncomplete(
            f"drift run {summary['run_id']} is incomplete: "
            + "; ".join(f"{a} ({why})" for a, why in summary["accounts_not_read"].items())
            + f" could not be read; fix the cause and run 'iamc drift -c {spec}' again"
        )
    if summary["drift"]:
        raise typer.Exit(FOUND)
