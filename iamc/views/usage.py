"""What a person watches of the usage step: its progress line and the per-account summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.prefect_runtime import imports_without_gc


def usage_with_progress(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the usage flow under a status line.

    Returns:
        The flow's summary (``flows.usage.usage_summary``).
    """
    # Deferred: the flow imports Prefect, which reads its settings at import.
    with imports_without_gc():
        from flows.usage import run_usage

    with console.status("[bold]usage[/] reading IAM's last-accessed data and CloudTrail"):
        result = run_usage(str(spec), profile)
    return result if isinstance(result, dict) else result.data


def print_usage_summary(console: Console, summary: dict[str, Any]) -> None:
    """Per account: users read, users not read and why."""
    console.print(
        f"usage run {summary['run_id']} (read {summary['read_id']}, inventory snapshot "
        f"{summary['snapshot_id']}, last {summary['window_days']} days): "
        f"{summary['users']} user(s) read, {summary['unread']} not",
        highlight=False,
    )
    table = Table("account", "users read", "not read (why)")
    for account_id, row in summary["accounts"].items():
        unread = "; ".join(
            f"{'whole account' if user == '*' else user}: {why}"
            for user, why in sorted(row["unread"].items())
        )
        table.add_row(account_id, str(row["read"]), escape(unread) or "-")
    console.print(table)
