"""What a person watches of the inventory step: its progress bar, the inventory and wave reports."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domain import csv_export, inventory_report
from domain.progress import listening
from domain.records import Finding
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from engine.reports import WAVE_COLUMNS, waves_report
from engine.reports import inventory_report as load_report


def inventory_with_progress(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the inventory flow with a progress bar (accounts done/total, users found)."""
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.inventory import run_inventory

    with Progress(
        TextColumn("[bold]inventory[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("accounts · {task.fields[users]} users"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("accounts", total=None, users=0)
        found = {"users": 0}
        ended: set[str] = set()  # an account counts once (a parent reports its batches' too)

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "scope":
                progress.update(bar, total=data["accounts"])
            elif event == "account-done" and data["account_id"] not in ended:
                ended.add(data["account_id"])
                found["users"] += data["users"]
                progress.update(bar, advance=1, users=found["users"])

        with listening(on_event):
            summary = run_inventory(spec, profile)
    failed = summary["accounts_failed"]
    console.print(
        f"snapshot {summary['snapshot_id']} (run {summary['run_id']}): "
        f"{summary['accounts']} accounts, {summary['users']} IAM users"
        + (f", [red]{len(failed)} accounts failed[/]: {', '.join(failed)}" if failed else ""),
        highlight=False,
    )
    return summary


def print_inventory_report(
    console: Console,
    spec: Path | str,
    output_format: str = "table",
    *,
    send: bool = False,
    profile: str | None = None,
) -> None:
    """Print the latest snapshot's per-account report as a table, JSON, CSV or ASFF findings
    (or, ``send``, import those into Security Hub)."""
    rows, meta, findings = Migration.call(load_report, spec)
    # Machine formats bypass rich: no wrapping, no markup, exactly what a pipe expects.
    if output_format == "asff":
        _asff(console, spec, rows, send, profile)
    elif output_format == "json":
        meta["findings"] = [asdict(f) for f in findings]
        sys.stdout.write(inventory_report.render_json(rows, meta) + "\n")
    elif output_format == "csv":
        sys.stdout.write(inventory_report.render_csv(rows))
    else:
        print_inventory_table(
            console, rows, f"{meta['migration']}: snapshot {meta['snapshot_id']} ({meta['taken']})"
        )
        print_findings(console, findings)


def _asff(
    console: Console, spec: Path | str, rows: list[dict[str, Any]], send: bool, profile: str | None
) -> None:
    """The verdicts as Security Hub findings of the management account's default product."""
    import json
    from datetime import UTC, datetime

    from domain.cis_asff import asff_findings
    from domain.spec import load_spec
    from tasks.aws import AwsSessions  # boto3: only this format reaches AWS

    loaded = load_spec(spec)
    sessions = AwsSessions.from_spec(loaded, profile)
    found = asff_findings(
        rows,
        product_account=sessions.management_account_id(),
        region=loaded.region,
        now=datetime.now(UTC),
    )
    if not send:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    from tasks.security_hub import import_findings

    result = import_findings(sessions.management(), found)
    console.print(
        f"imported {result['imported']} of {len(found)} CIS 1.21 finding(s) into Security Hub "
        f"({loaded.region})",
        highlight=False,
    )
    if result["failed"]:
        from domain.errors import AwsAccessError

        raise AwsAccessError(
            f"Security Hub refused {len(result['failed'])} finding(s): "
            + "; ".join(result["failed"][:5])
        )


def print_findings(console: Console, findings: list[Finding]) -> None:
    """Warnings and errors, the same finding in many accounts folded into one line."""
    folded: dict[tuple[str, str, str], list[str]] = {}
    for finding in findings:
        if finding.severity not in ("warning", "error", "blocking"):
            continue
        key = (finding.severity, finding.kind, finding.message)
        folded.setdefault(key, []).append(finding.account_id or "-")
    for (severity, kind, message), accounts in folded.items():
        where = accounts[0] if len(accounts) == 1 else f"{len(accounts)} accounts"
        style = "red" if severity in ("error", "blocking") else "yellow"
        console.print(
            f"[{style}]{severity}[/] {kind} ({where}): {escape(message)}", highlight=False
        )


def print_inventory_table(console: Console, rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title, show_footer=True)
    total = inventory_report.totals(rows)
    headers = {
        "account_id": "account",
        "account_name": "name",
        "keys_used_90d": "keys used ≤90d",
        "active_keys": "active keys",
        "console_without_mfa": "console, no MFA",
        "cis_1_21": "CIS 1.21",
        "long_lived_keys": "long-lived keys left",
    }
    text_only = (
        "error",
        "cis_1_21_why",
        "cis_1_21_exceptions",
        "cis_1_21_evidence",
        "long_lived_keys_why",
    )
    columns = [c for c in inventory_report.INVENTORY_COLUMNS if c not in text_only]
    for column in columns:
        if column == "account_id":
            footer = f"{total['accounts']} accounts"
        elif column == "cis_1_21":
            footer = f"{total['accounts_passing']} pass"
        elif column in total:
            footer = str(total[column])
        else:
            footer = ""
        table.add_column(
            headers.get(column, column),
            footer=footer,
            justify="left" if column in ("account_id", "account_name", "cis_1_21") else "right",
        )
    styles = {
        inventory_report.CIS_PASS: "green",
        inventory_report.CIS_PASS_EXCEPTIONS: "green",
        inventory_report.CIS_FAIL: "red",
        inventory_report.CIS_UNKNOWN: "yellow",
    }
    for row in rows:
        cells = [str(row[c]) for c in columns]
        at = columns.index("cis_1_21")
        cells[at] = f"[{styles[row['cis_1_21']]}]{row['cis_1_21']}[/]"
        table.add_row(*cells)
    console.print(table)
    for row in rows:
        verdict = row["cis_1_21"]
        if verdict in (inventory_report.CIS_FAIL, inventory_report.CIS_UNKNOWN):
            how = "fails" if verdict == inventory_report.CIS_FAIL else "is not judged on"
            console.print(
                f"{row['account_id']} {how} CIS 1.21: {escape(row['cis_1_21_why'])}",
                highlight=False,
            )
        elif row["cis_1_21_exceptions"]:
            console.print(
                f"{row['account_id']} passes CIS 1.21 with documented exceptions: "
                f"{escape(row['cis_1_21_exceptions'])}",
                highlight=False,
            )
        if row.get("long_lived_keys_why"):
            console.print(
                f"{row['account_id']} keeps {row['long_lived_keys']} long-lived key(s): "
                f"{escape(row['long_lived_keys_why'])}",
                highlight=False,
            )


def print_waves_report(console: Console, spec: Path | str, output_format: str = "table") -> None:
    """Per wave: accounts, users migrated, disabled, deleted, CIS 1.21 and what is pending."""
    rows, meta = Migration.call(waves_report, spec)
    if output_format == "json":
        console.print_json(json.dumps({**meta, "waves": rows}, default=str))
        return
    if output_format == "csv":
        text = csv_export.render_csv(WAVE_COLUMNS, rows, extra="ignore")
        console.print(text, end="", markup=False, highlight=False)
        return
    table = Table(title=f"waves of {meta['migration']} (inventory snapshot {meta['snapshot_id']})")
    headers = {
        "to_migrate": "to migrate",
        "cis_pass": "CIS pass",
        "cis_fail": "CIS fail",
        "cis_unknown": "CIS ?",
    }
    for column in WAVE_COLUMNS:
        table.add_column(
            headers.get(column, column),
            justify="left" if column in ("wave", "pending") else "right",
        )
    for row in rows:
        cells = ["" if row[c] is None else str(row[c]) for c in WAVE_COLUMNS]
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
