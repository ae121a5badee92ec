"""The key scan step's commands: ``iamc scan``, ``iamc scan accept`` and ``iamc report keys``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from domain.errors import ScanIncomplete
from engine.key_acceptance import accept_hard_coded_keys
from engine.migration import Migration
from iamc.commands.common import (
    GroupSpecOption,
    ProfileOption,
    SpecOption,
    report_to_prefect,
    required_spec,
)
from iamc.consoles import console
from iamc.views.keys import print_key_report, scan_with_progress

app = typer.Typer()
report = typer.Typer()
scan_app = typer.Typer(
    help="Find every place an access key is written down (default), or accept a finding.",
    invoke_without_command=True,
)
app.add_typer(scan_app, name="scan")


@scan_app.callback()
def scan(
    ctx: typer.Context,
    spec: GroupSpecOption = None,
    profile: ProfileOption = None,
) -> None:
    """Scan the spec's code paths and every in-scope account's configuration for access keys.

    Exit 4 when an account could not be scanned, or git refused a path's repository (the
    rest is stored), as an incomplete inventory does; a skipped path, file or blob, or a gap,
    is reported, not fatal.
    """
    if ctx.invoked_subcommand is not None:
        return
    spec = required_spec(spec)
    report_to_prefect()
    summary = scan_with_progress(console, spec, profile)
    failed = [f"account(s) {', '.join(summary['accounts_failed'])} could not be scanned"]
    failed = failed if summary["accounts_failed"] else []
    failed += [
        f"path {path} could not be scanned completely: {reason}"
        for path, reason in summary.get("paths_failed", {}).items()
    ]
    if failed:
        raise ScanIncomplete(
            f"key scan run {summary['run_id']} is incomplete: " + "; ".join(failed)
        )
    console.print(f"next: iamc report keys -c {spec}; iamc plan -c {spec}", style="dim")


@scan_app.command("accept")
def scan_accept(
    target: Annotated[str, typer.Argument(help="ACCOUNT/USER whose hard-coded keys to accept.")],
    spec: SpecOption,
    by: Annotated[str, typer.Option("--by", help="Who accepts (name or e-mail).")],
    reason: Annotated[str, typer.Option("--reason", help="Why disabling it is safe anyway.")],
) -> None:
    """Record that a user's hard-coded keys (as found now) need not hold its disable/delete."""
    account_id, sep, user = target.partition("/")
    if not sep or not account_id or not user:
        raise typer.BadParameter("expected ACCOUNT/USER, e.g. 111111111111/deployer")
    acceptance = Migration.call(
        accept_hard_coded_keys, spec, account_id, user, approver=by, reason=reason
    )
    console.print(
        f"accepted {len(acceptance.key_ids)} hard-coded key(s) of {account_id}/{user} by "
        f"{acceptance.approver} at {acceptance.at:%Y-%m-%d %H:%M}: the next 'iamc plan' shows "
        "them as an accepted risk",
        highlight=False,
    )


class KeyReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    sarif = "sarif"


@report.command("keys")
def report_keys(
    spec: SpecOption,
    output_format: Annotated[
        KeyReportFormat, typer.Option("--format", "-f", help="table, json, csv or sarif.")
    ] = KeyReportFormat.table,
) -> None:
    """Every access key written down, its owner and status (key ids masked); SARIF for code."""
    print_key_report(console, spec, output_format.value)
