"""What a person watches while retiring users: the bake table, decisions, restores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.bake_evidence import bake_report
from engine.prefect_runtime import imports_without_gc

_STYLE = {
    "in-use": "bold red",
    "keep": "yellow",
    "baking": "cyan",
    "ready": "green",
    "re-enabled": "magenta",
    "deleted": "dim",
}


def bake_with_table(console: Console, spec: Path | str, collect: bool = True) -> dict[str, Any]:
    """Run the bake watch (or only report) and print one row per disabled user."""
    if collect:
        # Deferred: the flow imports Prefect, which reads its settings (the API the
        # command chose) at import; this module's read-only commands never import it.
        with imports_without_gc():
            from flows.bake import bake_watch_flow

        report = bake_watch_flow(str(spec))
    else:
        report = bake_report(spec, collect=False)
    table = Table(title=f"bake period ({report['now'][:16]}Z)")
    for column in ("user", "state", "disabled at", "deletable from", "why / evidence"):
        table.add_column(column)
    for user in report["users"]:
        style = _STYLE.get(user["state"], "")
        evidence = "\n".join(e["line"] for e in user["evidence"][-3:])
        table.add_row(
            user["user"],
            f"[{style}]{user['state']}[/]",
            (user["disabled_at"] or "")[:16],
            (user["deletable_from"] or "")[:16],
            escape(user["reason"] + (f"\n{evidence}" if evidence else "")),
        )
    console.print(table)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(report["counts"].items()))
    what = f"bake run {report['run_id']}" if report["run_id"] else "bake (as recorded)"
    console.print(f"{what}: {counts or 'no disabled users'}", highlight=False)
    for error in report["errors"]:
        console.print(f"[red]not read[/] {escape(error)}", highlight=False)
    if report["counts"].get("in-use"):
        console.print(
            f"in use: re-enable them (iamc rollback RUN_ID -c {spec} --user ACCOUNT/NAME) or "
            f"record a decision (iamc bake decide ACCOUNT/NAME -c {spec} --by NAME --reason ...)",
            style="dim",
            highlight=False,
        )
    return report


def print_decision(console: Console, decision: dict[str, Any]) -> None:
    console.print(
        f"{decision['user']}: {decision['decision']} — decided by {decision['by']} at "
        f"{decision['at'][:16]}Z: {escape(decision['reason'])}",
        highlight=False,
    )


def restore_with_listing(
    console: Console, spec: Path | str, user: str | None, run_id: int | None
) -> dict[str, Any]:
    """Restore and print, per user, what came back and what a person must do by hand."""
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.restore import restore_flow

    summary = restore_flow(str(spec), user, run_id)
    print_restore(console, summary)
    return summary


def print_restore(console: Console, summary: dict[str, Any]) -> None:
    """Per restored user: what came back, what was there, what a person must do by hand."""
    for result in summary["users"]:
        console.print(f"[bold]{result['user']}[/] (unique id {result['user_id']})", highlight=False)
        for line in result["restored"]:
            console.print(f"  [green]re-created[/] {escape(line)}", highlight=False)
        for line in result["present"]:
            console.print(f"  already there: {escape(line)}", highlight=False)
        for line in result["cannot"]:
            console.print(f"  [yellow]not restored[/] {escape(line)}", highlight=False)
    console.print(f"restore run {summary['run_id']}", highlight=False)


def print_delete_preconditions(console: Console, spec: Path | str, plan_id: int) -> None:
    """Where each user this plan disabled stands against the delete preconditions (as
    recorded: no AWS reads; the delete stage checks again, live)."""
    report = bake_report(spec, collect=False, plan_id=plan_id)
    if not report["users"]:
        return
    table = Table(title=f"delete preconditions of plan {plan_id} (as recorded)")
    for column in ("user", "state", "deletable from", "why"):
        table.add_column(column)
    for user in report["users"]:
        style = _STYLE.get(user["state"], "")
        table.add_row(
            user["user"],
            f"[{style}]{user['state']}[/]",
            (user["deletable_from"] or "")[:16],
            escape(user["reason"]),
        )
    console.print(table)
