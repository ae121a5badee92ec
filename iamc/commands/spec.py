"""The spec's commands: ``iamc check`` validates it, ``iamc policy`` prints the policy it needs."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from domain.spec import load_spec
from iamc.commands.common import SpecOption
from iamc.consoles import console, err_console
from tasks.permissions import DEFAULT_MEMBER_ROLE, least_privilege_policies

app = typer.Typer()


@app.command("check")
def check(spec: SpecOption) -> None:
    """Validate a migration spec and print it as understood."""
    loaded = load_spec(spec)
    console.print(f"[green]{spec}: valid[/green]")
    console.print_json(data=loaded.model_dump(mode="json"))


class PolicyKind(StrEnum):
    member = "member"
    restore = "restore"
    management = "management"


@app.command("policy")
def policy(
    which: Annotated[
        PolicyKind,
        typer.Argument(
            help="member (the role every command but restore assumes in member accounts), "
            "restore (the role iamc restore assumes) or management."
        ),
    ] = PolicyKind.member,
    spec: Annotated[
        Path | None,
        typer.Option("--spec", "-c", help="The migration spec: its role names and protected tag."),
    ] = None,
) -> None:
    """Print the least-privilege IAM policy iamc needs, generated from the code's declarations."""
    if spec is None:
        policies = least_privilege_policies()
        # The policy goes to stdout for piping; what it assumed, to stderr.
        err_console.print(
            f"no spec given: member and restore role {DEFAULT_MEMBER_ROLE}, protected tag "
            "iamc:protected; pass -c SPEC for yours",
            style="dim",
            highlight=False,
        )
    else:
        loaded = load_spec(spec)
        policies = least_privilege_policies(
            loaded.member_role, loaded.restore_role, loaded.protected_tag
        )
    sys.stdout.write(json.dumps(policies[which.value], indent=2) + "\n")
