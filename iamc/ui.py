"""What a person watches: progress bars and reports on the console, shared by CLI and demo."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from iamc import reports
from iamc.records import Finding


def inventory_with_progress(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the inventory flow with a progress bar (accounts done/total, users found)."""
    from flows.inventory import run_inventory
    from flows.progress import listening

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

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "scope":
                progress.update(bar, total=data["accounts"])
            elif event == "account-done":
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


def inventory_report(console: Console, spec: Path | str, output_format: str = "table") -> None:
    """Print the latest snapshot's per-account report as a table, JSON or CSV."""
    from flows.reports import inventory_report as load_report

    rows, meta, findings = load_report(spec)
    # Machine formats bypass rich: no wrapping, no markup, exactly what a pipe expects.
    if output_format == "json":
        meta["findings"] = [asdict(f) for f in findings]
        sys.stdout.write(reports.render_json(rows, meta) + "\n")
    elif output_format == "csv":
        sys.stdout.write(reports.render_csv(rows))
    else:
        reports.print_table(
            console, rows, f"{meta['migration']}: snapshot {meta['snapshot_id']} ({meta['taken']})"
        )
        print_findings(console, findings)


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
