"""The ``iamc report`` group: each report lives with its runbook step and is imported when run."""

from __future__ import annotations

from typing import ClassVar

import typer

from iamc.lazy_commands import Lazy, LazyGroup

# In the order `iamc report --help` lists them; each is the module's `report` app's command.
# (`iamc` checked the spec before importing this module: see iamc.cli.spec_before_import.)
REPORTS = {
    "inventory": Lazy(
        "iamc.commands.inventory",
        "Per account: users by class, key activity, console users without MFA, CIS 1.21 verdict.",
        app="report",
    ),
    "keys": Lazy(
        "iamc.commands.scan",
        "Every access key written down, its owner and status (key ids masked); SARIF for code.",
        app="report",
    ),
    "workloads": Lazy(
        "iamc.commands.workloads",
        "Where each workload user's keys are used from, as last stored (key ids masked).",
        app="report",
    ),
    "waves": Lazy(
        "iamc.commands.inventory",
        "Per wave: accounts, users migrated, disabled, deleted, CIS 1.21 verdicts, what is "
        "pending.",
        app="report",
    ),
    "mapping": Lazy(
        "iamc.commands.mapping",
        "Per IAM user: the identity it maps to and the rule, or why not (csv: for the IdP team).",
        app="report",
    ),
}


class _Reports(LazyGroup):
    lazy: ClassVar[dict[str, Lazy]] = REPORTS


app = typer.Typer()
app.add_typer(
    typer.Typer(cls=_Reports, help="Reports from the state store.", no_args_is_help=True),
    name="report",
)
