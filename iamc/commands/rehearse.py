"""The commands to rehearse on: ``iamc sandbox up``, ``iamc demo`` and ``iamc ui``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from iamc.commands.common import valid_spec
from iamc.consoles import console
from iamc.demo import run_demo
from iamc.prefect_ui import run_ui
from sandbox.run import up

app = typer.Typer()
sandbox_app = typer.Typer(help="A strict local AWS organization (moto) to rehearse on.")
app.add_typer(sandbox_app, name="sandbox")


@app.command("ui")
def ui_command(
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            "-c",
            help="The migration spec; default: a sandbox demo spec.",
            callback=valid_spec,
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the local Prefect server and UI.")] = 4200,
    with_sandbox: Annotated[
        bool, typer.Option("--sandbox/--no-sandbox", help="Also run a seeded sandbox AWS.")
    ] = True,
    workdir: Path = Path(".iamc/ui"),
) -> None:
    """Start a local Prefect server and UI, and serve the runbook's deployments to it."""
    run_ui(console, spec=spec, port=port, with_sandbox=with_sandbox, workdir=workdir)


@app.command("demo")
def demo(
    accounts: Annotated[int, typer.Option(min=1, max=500)] = 6,
    users_per_account: Annotated[int, typer.Option(min=0, max=5000)] = 12,
    seed: int = 7,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its spec and state.")] = Path(
        ".iamc/demo"
    ),
    target: Annotated[
        str,
        typer.Option(
            help="Where people's access lands: identity-center, or central-roles (roles in "
            "each member account that people switch into from one identity account)."
        ),
    ] = "identity-center",
) -> None:
    """Seed a sandbox organization and run the migration steps against it, end to end."""
    if target not in ("identity-center", "central-roles"):
        raise typer.BadParameter(
            f"{target!r}: expected identity-center or central-roles", param_hint="--target"
        )
    run_demo(
        accounts=accounts,
        users_per_account=users_per_account,
        seed=seed,
        workdir=workdir,
        console=console,
        target=target,
    )


@sandbox_app.command("up")
def sandbox_up(
    accounts: Annotated[int, typer.Option(min=0, max=500, help="Member accounts.")] = 6,
    users_per_account: Annotated[int, typer.Option(min=0, max=5000)] = 12,
    seed: Annotated[int, typer.Option(help="Same seed, same organization.")] = 7,
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port.")] = 5123,
    empty: Annotated[bool, typer.Option(help="Seed only the org and Identity Center.")] = False,
    samples_dir: Annotated[
        Path | None, typer.Option(help="Where to write sample code with a hard-coded key.")
    ] = Path(".iamc/sandbox-samples"),
    central: Annotated[
        bool,
        typer.Option(
            help="Also an identity account whose IAM users are the people, each with MFA "
            '(for target = "central-roles").'
        ),
    ] = False,
) -> None:
    """Run a seeded local AWS organization on 127.0.0.1 until interrupted (Ctrl-C)."""
    up(
        accounts=accounts,
        users_per_account=users_per_account,
        seed=seed,
        port=port,
        empty=empty,
        samples_dir=samples_dir,
        console=console,
        central=central,
    )
