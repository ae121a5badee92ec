"""What a person watches of the workloads step: its progress line and the placements report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from domain import workload_report
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from engine.reports import workloads_report

_CONFIDENCE_STYLES = {"high": "green", "medium": "yellow", "low": "red", "none": "dim"}


def workloads_with_progress(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the workloads flow under a status line, then say what it placed.

    Returns:
        The flow's summary; ``accounts_failed`` ({account: why}) non-empty means the run is
        incomplete (the rest is stored).
    """
    # Deferred: the flow imports Prefect, which reads its settings (the API the command
    # chose) at import; this module's read-only command never imports it.
    with imports_without_gc():
        from flows.workloads import run_workloads

    with console.status("[bold]workloads[/] reading CloudTrail, last-used data and the key scan"):
        result = run_workloads(str(spec), profile)
    summary: dict[str, Any] = result if isinstance(result, dict) else result.data
    runtimes = ", ".join(f"{k} {v}" for k, v in summary["runtimes"].items()) or "none"
    console.print(
        f"workloads run {summary['run_id']} (inventory snapshot {summary['snapshot_id']}): "
        f"{summary['users']} workload user(s): {runtimes}",
        highlight=False,
    )
    return summary


def print_workloads_report(
    console: Console, spec: Path | str, output_format: str = "table"
) -> dict[str, Any]:
    """Print the stored placements: table, JSON or CSV (key ids masked).

    Returns:
        The report's ``meta`` (run id, ``accounts_failed``).
    """
    data = Migration.call(workloads_report, spec)
    placements, meta = data["placements"], data["meta"]
    if output_format == "json":
        sys.stdout.write(workload_report.render_json(placements, meta) + "\n")
        return meta
    if output_format == "csv":
        sys.stdout.write(workload_report.render_csv(placements))
        return meta
    table = Table(
        title=f"{meta['migration']}: where workload keys are used from (workloads run "
        f"{meta['run_id']}, {meta['recorded'][:16]})",
        title_justify="left",
    )
    for column in workload_report.TABLE_COLUMNS:
        table.add_column(column, overflow="fold")
    for placement in placements:
        row = workload_report.table_row(placement)
        style = _CONFIDENCE_STYLES.get(row["Confidence"], "")
        row["Confidence"] = f"[{style}]{row['Confidence']}[/]"
        row["Evidence"] = escape(row["Evidence"])
        table.add_row(*(row[c] for c in workload_report.TABLE_COLUMNS))
    console.print(table)
    if not placements:
        console.print("no workload users in the latest inventory", highlight=False)
    for account_id, why in meta["accounts_failed"].items():
        console.print(
            f"[red]not read:[/] {account_id}: {escape(why)} (its earlier placements, if any, "
            "are shown)",
            highlight=False,
            soft_wrap=True,
        )
    return meta
