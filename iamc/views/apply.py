"""What a person watches of apply, resume and rollback runs, and of the runs and their status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domain.progress import listening
from domain.runs import RUN_SUPERSEDED
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from engine.runs import list_runs, run_status
from iamc.views.retire import print_restore


def _apply_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]apply[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("actions · {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    )


def watch_actions(console: Console, work: Any) -> dict[str, Any]:
    with _apply_progress(console) as progress:
        bar = progress.add_task("actions", total=None, failed=0)
        failed = {"n": 0}
        ended: set[str] = set()  # an action counts once (a parent reports its batches' too)

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "apply-start":
                progress.update(bar, total=data["actions"])
            elif event == "action-done" and data["action_id"] not in ended:
                ended.add(data["action_id"])
                if data["status"] == "failed":
                    failed["n"] += 1
                    reason = escape(data["error"] or "")
                    progress.console.print(
                        f"[red]failed[/] {escape(data['action_id'])}: {reason}", highlight=False
                    )
                progress.update(bar, advance=1, failed=failed["n"])

        with listening(on_event):
            return work()


def print_apply_summary(console: Console, spec: Path | str, summary: dict[str, Any]) -> None:
    console.print(
        f"run {summary['run_id']} (plan {summary['plan_id']}, stage {summary['stage']}): "
        f"{summary['succeeded']} done, {summary['adopted']} adopted (already there), "
        f"{summary['failed']} failed, {summary['pending']} pending of {summary['actions']}",
        highlight=False,
    )
    for refused in summary.get("refused_by_plan") or []:
        console.print(f"[yellow]refused by the plan[/] {escape(refused)}", highlight=False)
    console.print(f"next: iamc status {summary['run_id']} -c {spec}", style="dim", highlight=False)


def apply_with_progress(
    console: Console, spec: Path | str, plan_id: int, stage: str
) -> dict[str, Any]:
    """Run the apply flow with a progress bar (actions done/total, failures as they happen)."""
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.apply import apply_flow

    summary = watch_actions(console, lambda: apply_flow(str(spec), plan_id, stage))
    print_apply_summary(console, spec, summary)
    return summary


def resume_with_progress(console: Console, spec: Path | str, run_id: int) -> None:
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.apply import refuse_unresumable, resume

    # Before the display: a run that may not act is refused without a "0/?" bar first.
    refuse_unresumable(spec, run_id)
    summary = watch_actions(console, lambda: resume(spec, run_id))
    if "users" in summary:  # a restore run
        print_restore(console, summary)
    elif "succeeded" in summary:
        print_apply_summary(console, spec, summary)
    else:
        console.print(
            f"rollback run {summary['run_id']} ({summary['unit']}): "
            f"{len(summary['undo'])} undone, {len(summary['left_alone'])} left alone",
            highlight=False,
        )


_STATUS_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "running": "yellow",
    "interrupted": "red",
    "superseded": "dim",
}


def _styled(status: str) -> str:
    style = _STATUS_STYLES.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def print_runs(console: Console, spec: Path | str) -> None:
    table = Table(title="runs")
    for column in ("run", "kind", "status", "plan", "stage", "started", "finished", "error"):
        table.add_column(column)
    runs = Migration.call(list_runs, spec)
    for run in runs:
        status = _styled(run["status"])
        # Only a run that may no longer act says who took over; one that succeeded before a
        # later run of its stage (its rollback, say) stays just "succeeded".
        if run["superseded_by"] and run["status"] == RUN_SUPERSEDED:
            status += f" (by {run['superseded_by']})"
        table.add_row(
            str(run["id"]),
            run["kind"],
            status,
            str(run["plan_id"] or ""),
            run["stage"] or "",
            run["started"],
            run["finished"] or "",
            escape(run["error"] or ""),
        )
    console.print(table)
    for run in runs:
        if run["next"] and run["status"] in ("failed", "interrupted"):
            console.print(f"run {run['id']} {run['status']}: continue with {run['next']}")


def _account_table(title: str, rows: dict[str, Any], columns: list[tuple[str, str]]) -> Any:
    table = Table(title=title)
    table.add_column("account")
    for header, _ in columns:
        table.add_column(header, justify="right")
    for account, row in rows.items():
        cells = [
            f"[red]{row[key]}[/]" if key == "failed" and row[key] else str(row.get(key, 0))
            for _, key in columns
        ]
        table.add_row(account, *cells)
    return table


def print_status(console: Console, spec: Path | str, run_id: int) -> None:
    status = Migration.call(run_status, spec, run_id)
    run = status["run"]
    wave = f" of wave {run['wave']}" if run.get("wave") else ""
    line = (
        f"run {run['id']} ({run['kind']} of plan {run['plan_id']}{wave}, stage {run['stage']}): "
        f"{_styled(run['status'])}"
    )
    if run["superseded_by"]:
        line += f" by run {run['superseded_by']}: only the latest run of a stage acts"
    console.print(line, highlight=False)
    rollback = run["kind"] == "rollback"
    own = (
        [("undone", "rolled_back"), ("failed", "failed")]
        if rollback
        else [("done", "done"), ("adopted", "adopted"), ("failed", "failed")]
    )
    if status["accounts"]:
        console.print(_account_table(f"what run {run['id']} did", status["accounts"], own))
    else:
        console.print(f"run {run['id']} changed nothing", highlight=False)
    stage_columns = [
        ("done", "done"),
        ("adopted", "adopted"),
        ("pending", "pending"),
        ("failed", "failed"),
        ("rolled back", "rolled_back"),
    ]
    if any(row.get("refused") for row in status["stage"].values()):
        stage_columns.append(("refused", "refused"))
    console.print(
        _account_table(
            f"plan {run['plan_id']} stage {run['stage']} now", status["stage"], stage_columns
        )
    )
    for account, row in status["stage"].items():
        # What the live checks refused is left as it was: not an error of AWS's.
        for refusal in row["refusals"]:
            console.print(f"[yellow]refused[/] {account}: {escape(refusal)}", highlight=False)
        for error in row["errors"]:
            console.print(f"[red]error[/] {account}: {escape(error)}", highlight=False)
    if run["next"]:
        console.print(f"next: {run['next']}", highlight=False)


def rollback_with_listing(
    console: Console, spec: Path | str, run_id: int, dry_run: bool, user: str | None = None
) -> None:
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.apply import rollback_flow

    result = rollback_flow(str(spec), run_id, dry_run, user=user)
    verb = "would undo" if dry_run else "undone"
    console.print(
        f"rollback of {result['unit']}: "
        f"{len(result['undo'])} {verb}, {len(result['left_alone'])} left alone",
        highlight=False,
    )
    for line in result["undo"]:
        console.print(f"  {verb}: {escape(line)}", highlight=False)
    for line in result["left_alone"]:
        console.print(f"  left alone: {escape(line)}", highlight=False)
    if not dry_run:
        console.print(f"rollback run {result['run_id']}", highlight=False)
