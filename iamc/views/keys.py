"""What a person watches of the key scan step: its progress line and the hard-coded keys report."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domain import key_report
from domain.progress import listening
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from engine.reports import key_scan_report

_CLASS_STYLES = {
    "org-key-active": "bold red",
    "org-key-inactive": "yellow",
    "org-key-deleted": "dim",
    "out-of-scope-account": "magenta",
    "unattributed": "cyan",
    "ignored": "dim",
}


def scan_with_progress(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the key-scan flow with a progress line (code paths and accounts done), then a summary.

    Returns:
        The flow's summary; ``accounts_failed`` or ``paths_failed`` non-empty means the
        scan is incomplete.
    """
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.key_scan import run_key_scan

    with Progress(
        TextColumn("[bold]key scan[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("paths and accounts · {task.fields[hits]} hits · {task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("units", total=None, hits=0, last="")
        found = {"hits": 0}

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "scan-scope":
                progress.update(bar, total=data["units"])
            elif event == "scan-unit-done":
                found["hits"] += data["hits"]
                progress.update(bar, advance=1, hits=found["hits"], last=data["what"])

        with listening(on_event):
            summary = run_key_scan(spec, profile)
    classes = ", ".join(f"{k} {v}" for k, v in summary["findings"].items()) or "nothing found"
    console.print(
        f"key scan run {summary['run_id']} (inventory snapshot {summary['snapshot_id']}): "
        f"{summary['paths']} code paths, {summary['accounts']} accounts: {classes}",
        highlight=False,
    )
    console.print(
        f"  {summary['org_keys']} organization key(s) of {summary['users']} IAM user(s) written "
        f"down; {summary['skipped']} skipped, {summary['gaps']} gaps",
        highlight=False,
    )
    for problem in summary["problems"]:
        console.print(f"  [yellow]{escape(problem)}[/]", highlight=False, soft_wrap=True)
    failed = summary["accounts_failed"]
    if failed:
        console.print(
            f"[red]incomplete:[/] {len(failed)} account(s) not scanned: {', '.join(failed)}; "
            "their earlier scan results (if any) still count",
            highlight=False,
        )
    for path in summary.get("paths_failed", {}):
        console.print(
            f"[red]incomplete:[/] {escape(path)}: git history not scanned; its earlier "
            "history results (if any) still count",
            highlight=False,
        )
    return summary


def print_key_report(console: Console, spec: Path | str, output_format: str = "table") -> None:
    """Print what the key scans say now: table, JSON, CSV or SARIF (key ids masked)."""
    data = Migration.call(key_scan_report, spec)
    findings, problems, unscanned = data["findings"], data["problems"], data["unscanned"]
    if output_format == "json":
        sys.stdout.write(key_report.render_json(findings, problems, unscanned, data["meta"]))
        sys.stdout.write("\n")
        return
    if output_format == "csv":
        sys.stdout.write(key_report.render_csv(findings))
        return
    if output_format == "sarif":
        try:
            tool_version = version("iam-centralize")
        except PackageNotFoundError:
            tool_version = "0"
        sarif = key_report.render_sarif(findings, data["roots"], tool_version, problems)
        sys.stdout.write(sarif + "\n")
        return
    meta = data["meta"]
    table = Table(
        title=f"{meta['migration']}: hard-coded keys (latest scan run {meta['scan_run_id']}, "
        f"{meta['scanned_at']})",
        title_justify="left",
    )
    for column in ("Classification", "Key", "Owner", "Status", "Last used", "Where", "Secret"):
        table.add_column(column, overflow="fold")
    shown = [f for f in key_report.sort_findings(findings) if f.classification != "ignored"]
    for finding in shown:
        row = key_report.finding_row(finding)
        owner = "/".join(x for x in (row["owner_account_id"], row["owner_user"]) if x) or "-"
        table.add_row(
            f"[{_CLASS_STYLES.get(row['classification'], '')}]{row['classification']}[/]",
            row["key"],
            owner,
            row["key_status"] or "-",
            (row["key_last_used"] or "-")[:10],
            escape(row["where"]) + (f"\n[dim]{escape(row['note'])}[/]" if row["note"] else ""),
            "yes" if row["secret_found"] else "-",
        )
    console.print(table)
    ignored = [f for f in findings if f.classification == "ignored"]
    if ignored:
        console.print(f"ignored look-alikes ({len(ignored)}):", highlight=False)
        for finding in ignored:
            console.print(f"  {escape(finding.where())}: {escape(finding.note)}", highlight=False)
    for problem in problems:
        console.print(f"[yellow]{escape(str(problem))}[/]", highlight=False)
    for unit in unscanned:
        console.print(f"[yellow]never scanned:[/] {escape(unit)}", highlight=False)
