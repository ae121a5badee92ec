"""What a person watches: progress bars and reports on the console, shared by CLI and demo."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from console.prefect_runtime import imports_without_gc
from domain import csv_export, inventory_report
from domain.records import Finding

if TYPE_CHECKING:
    from state.identity import MappingInfo


def inventory_with_progress(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the inventory flow with a progress bar (accounts done/total, users found)."""
    from domain.progress import listening

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


def print_inventory_report(
    console: Console, spec: Path | str, output_format: str = "table"
) -> None:
    """Print the latest snapshot's per-account report as a table, JSON or CSV."""
    from engine.migration import Migration
    from engine.reports import inventory_report as load_report

    with Migration.open(spec) as mig:
        rows, meta, findings = load_report(mig)
    # Machine formats bypass rich: no wrapping, no markup, exactly what a pipe expects.
    if output_format == "json":
        meta["findings"] = [asdict(f) for f in findings]
        sys.stdout.write(inventory_report.render_json(rows, meta) + "\n")
    elif output_format == "csv":
        sys.stdout.write(inventory_report.render_csv(rows))
    else:
        print_inventory_table(
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


def plan_with_summary(
    console: Console, spec: Path | str, out: Path | None, wave: str | None = None
) -> dict[str, Any]:
    """Run the plan flow and print what a reviewer needs first."""
    with imports_without_gc():
        from flows.plan import plan_flow

    with console.status("computing the plan…"):
        result = plan_flow(str(spec), str(out) if out else None, wave)
    for line in plan_summary_lines(result):
        console.print(line, highlight=False)
    for kind, path in result["files"].items():
        console.print(f"  {kind}: {path}", highlight=False)
    if result["blocking"] and not result.get("blocking_provision", result["blocking"]):
        console.print(
            f"[red]{result['blocking']} blocking error(s)[/] for stages disable/delete (keys "
            "written down, see plan.md): only stage provision can be approved",
            highlight=False,
        )
    elif result["blocking"]:
        console.print(
            f"[red]{result['blocking']} blocking error(s)[/]: see plan.md; this plan can't be "
            "approved"
        )
    else:
        console.print(
            f"next: iamc approve {result['plan_id']} -c {spec} --stage provision --by NAME "
            f"--ticket ID --hash {result['hash'][:12]}",
            style="dim",
            highlight=False,
        )
    return result


def _counted(counts: dict[str, int], order: list[str] | None = None) -> str:
    keys = [k for k in (order or []) if k in counts] + [k for k in counts if k not in (order or [])]
    return ", ".join(f"{counts[k]} {k}" for k in keys if counts[k]) or "none"


def plan_summary_lines(result: dict[str, Any]) -> list[str]:
    """What a reviewer reads first about a computed plan, in sentences, not Python dicts."""
    head = f"plan {result['plan_id']}, hash {result['hash'][:12]}"
    if result.get("wave"):
        head = f"wave {result['wave']}: {head}"
    if result["reused"]:
        head += (
            f": same content as the plan computed {result.get('computed', 'earlier')}, reused "
            "(same id and hash"
        )
        approvals = result.get("approvals") or []
        if approvals:
            head += "; its decisions still apply: " + "; ".join(
                f"{a['stage']} {a['decision']} by {a['approver']} ({a['ticket']})"
                for a in approvals
            )
        head += ")"
    stages = ["provision", "disable", "delete"]
    return [
        head,
        f"IAM users: {result['users']} ({_counted(result['outcomes'])})",
        f"to create: {result['permission_sets']} permission set(s), "
        f"{result['assignments']} account assignment(s)"
        + (
            f"; {result['permission_set_updates']} update(s) of the organization's sets"
            if result.get("permission_set_updates")
            else ""
        )
        + " (a set the organization already has for the same access is adopted)",
        f"actions by stage: {_counted(result['actions'], stages)}; "
        f"{result['irreversible']} of them irreversible (stage delete)",
    ]


def show_plan(console: Console, spec: Path | str, plan_id: int, output_format: str) -> None:
    from domain.plan_render import render_json, render_markdown
    from engine.migration import Migration
    from engine.reports import load_plan

    with Migration.open(spec) as mig:
        plan, meta = load_plan(mig, plan_id)
    if output_format == "json":
        sys.stdout.write(render_json(plan, meta) + "\n")
        return
    from rich.markdown import Markdown

    approvals = meta["approvals"]
    status = (
        "; ".join(
            f"{a['stage']} {a['decision']} by {a['approver']} ({a['ticket']})" for a in approvals
        )
        if approvals
        else "not approved"
    )
    console.print(f"plan {plan_id} hash {meta['hash']}: {status}", highlight=False)
    console.print(Markdown(render_markdown(plan, meta)))
    from iamc.retire_views import print_delete_preconditions

    print_delete_preconditions(console, spec, plan_id)


def verify_plan_file(console: Console, spec: Path | str, path: Path) -> None:
    """Tell a change board whether ``path`` is the stored plan, and its approvals per stage.

    Raises:
        InputFileError: the file is not a plan.json.
        PlanMismatchError: the file's content or hash differs from the stored plan's.
    """
    import json

    from domain.deletion import AUTHORISED_BY
    from domain.errors import InputFileError, PlanMismatchError
    from domain.plan import Stage
    from domain.plan_verify import compare_plan_file
    from engine.migration import Migration
    from engine.reports import load_plan

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputFileError(str(path), f"not a readable plan.json: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("plan_id"), int):
        raise InputFileError(str(path), "no plan_id: not a plan.json written by 'iamc plan'")
    plan_id = data["plan_id"]
    with Migration.open(spec) as mig:
        plan, meta = load_plan(mig, plan_id)
    check = compare_plan_file(data, plan, meta["hash"])
    if plan.content_hash() != meta["hash"]:
        check.differences.insert(
            0,
            f"the stored plan {plan_id} no longer matches its own hash {meta['hash'][:12]}: the "
            "state DB was changed after the plan was computed",
        )
    console.print(
        f"{escape(str(path))}: plan {plan_id}, stored hash {meta['hash']}", highlight=False
    )
    console.print(f"  content hash recomputed from the file: {check.file_hash}", highlight=False)
    console.print(
        f"  the stored plan, rendered the same way: {check.expected_hash}", highlight=False
    )
    for stage in Stage:
        decisions = [
            a
            for a in meta["approvals"]
            if a["stage"] in AUTHORISED_BY[stage]
            or (a["stage"] == "all" and a["decision"] == "rejected")
        ]
        text = "; ".join(
            f"{a['decision']} by {a['approver']} (ticket {a['ticket']}) at {a['at']}"
            for a in decisions
        )
        runs = [r for r in meta.get("runs", []) if r.get("stage") == stage]
        if runs:
            text += "; " + ", ".join(f"{r['kind']} run {r['id']} {r['status']}" for r in runs)
        console.print(f"  stage {stage}: {escape(text or 'not approved')}", highlight=False)
    if check.differences:
        raise PlanMismatchError(
            f"{path} is NOT plan {plan_id} as stored; do not approve from it:\n"
            + "\n".join(f"  - {d}" for d in check.differences)
        )
    console.print(
        f"[green]identical[/]: this file is plan {plan_id} as stored, byte for byte in content "
        f"(hash {meta['hash'][:12]})",
        highlight=False,
    )


# -- identity mapping -------------------------------------------------------------------------

MAPPING_CSV_COLUMNS = [
    "account_id",
    "iam_user",
    "status",
    "identity_user",
    "rule",
    "candidates",
    "email_tag",
    "reason",
]
_STATUS_STYLES = {"matched": "green", "unmatched": "red", "ambiguous": "yellow"}


def mapping_with_status(
    console: Console, spec: Path | str, profile: str | None = None
) -> dict[str, Any]:
    """Run the mapping flow with a spinner, then print its summary."""
    with imports_without_gc():
        from flows.mapping import run_mapping

    with console.status("mapping IAM users to Identity Center identities…"):
        summary = run_mapping(spec, profile)
    print_mapping_summary(console, summary)
    return summary


def print_mapping_summary(console: Console, summary: dict[str, Any]) -> None:
    """Matched/unmatched/ambiguous users, identities, groups mapped: a few lines."""
    console.print(
        f"mapping {summary.get('mapping_id', '-')} (run {summary['run_id']}, snapshot "
        f"{summary['snapshot_id']}): {summary['iam_users']} human IAM users: "
        f"[green]{summary['matched']} matched[/], [red]{summary['unmatched']} unmatched[/], "
        f"[yellow]{summary['ambiguous']} ambiguous[/]",
        highlight=False,
    )
    console.print(
        f"  {summary['identities']} identities ({summary['identities_in_several_accounts']} with "
        f"IAM users in several accounts); matched by rule: "
        + (", ".join(f"{rule} {n}" for rule, n in summary["by_rule"].items()) or "-")
        + (f"; ambiguous {summary['ambiguous']}" if summary.get("ambiguous") else ""),
        highlight=False,
    )
    console.print(
        f"  IAM groups: {summary['groups_matched']} of {summary['groups']} mapped to IdP groups"
        f" ({summary['groups_unmatched']} unmatched, {summary['groups_ambiguous']} ambiguous); "
        f"{summary['workload_users']} workload users need roles, not people",
        highlight=False,
    )
    for problem in summary.get("override_problems", []):
        console.print(f"[yellow]warning[/] override: {escape(problem)}", highlight=False)
    unseen = summary.get("accounts_not_inventoried") or {}
    for account_id, error in sorted(unseen.items()):
        console.print(
            f"[red]not inventoried[/] {account_id}: {escape(error or '')}: its users are not "
            "mapped, and a plan is blocked until it is inventoried or excluded",
            highlight=False,
        )


def mapping_user_rows(
    mapping: MappingInfo, tags: dict[tuple[str, str], dict[str, str]], tag_keys: list[str]
) -> list[dict[str, Any]]:
    """One row per human IAM user, for the IdP team: the candidates and email tag to act on."""
    keys = tag_keys or ["email"]
    rows = []
    for m in mapping.user_mappings:
        user_tags = tags.get((m.account_id, m.iam_user), {})
        rows.append(
            {
                "account_id": m.account_id,
                "iam_user": m.iam_user,
                "status": str(m.status),
                "identity_user": m.identity_user_name or "",
                "identity_user_id": m.identity_user_id or "",
                "rule": m.rule or "",
                "candidates": list(m.candidates),
                "email_tag": next((user_tags[k] for k in keys if user_tags.get(k)), ""),
                "reason": m.reason,
            }
        )
    return rows


def mapping_csv(users: list[dict[str, Any]]) -> str:
    """The mapping's users (:func:`mapping_user_rows`) as CSV, candidates joined by ``;``."""
    rows = ({**u, "candidates": ";".join(u["candidates"])} for u in users)
    return csv_export.render_csv(MAPPING_CSV_COLUMNS, rows, extra="ignore")


def mapping_report(
    console: Console, spec: Path | str, unmatched_only: bool = False, output_format: str = "table"
) -> None:
    """Print the latest mapping as a table, JSON or CSV (``--unmatched``: what needs a person)."""
    import json

    from engine.migration import Migration
    from engine.reports import latest_mapping

    with Migration.open(spec) as mig:
        mapping, tags, meta = latest_mapping(mig)
    users = mapping_user_rows(mapping, tags, meta["tag_keys"])
    groups = [
        {
            "account_id": g.account_id,
            "iam_group": g.iam_group,
            "status": str(g.status),
            "identity_group": g.identity_group_name or "",
            "identity_group_id": g.identity_group_id or "",
            "rule": g.rule or "",
            "reason": g.reason,
        }
        for g in mapping.group_mappings
    ]
    if unmatched_only:
        users = [u for u in users if u["status"] != "matched"]
        groups = [g for g in groups if g["status"] != "matched"]
    findings: list[Finding] = meta.pop("findings")
    if output_format == "json":
        data = {**meta, "users": users, "groups": groups, "findings": [asdict(f) for f in findings]}
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    if output_format == "csv":
        sys.stdout.write(mapping_csv(users))
        return
    from rich.table import Table

    title = f"{meta['migration']}: mapping {meta['mapping_id']} ({meta['created']})"
    table = Table(title=title + (" — not matched" if unmatched_only else ""))
    for column in ("account", "IAM user", "status", "identity", "rule", "reason"):
        table.add_column(column)
    for u in users:
        style = _STATUS_STYLES.get(u["status"], "")
        identity = u["identity_user"] or ", ".join(u["candidates"])
        table.add_row(
            u["account_id"],
            escape(u["iam_user"]),
            f"[{style}]{u['status']}[/]",
            escape(identity),
            escape(u["rule"]),
            escape(u["reason"]),
        )
    console.print(table)
    group_table = Table(title="IAM groups")
    for column in ("account", "IAM group", "status", "IdP group", "rule", "reason"):
        group_table.add_column(column)
    for g in groups:
        style = _STATUS_STYLES.get(g["status"], "")
        group_table.add_row(
            g["account_id"],
            escape(g["iam_group"]),
            f"[{style}]{g['status']}[/]",
            escape(g["identity_group"]),
            escape(g["rule"]),
            escape(g["reason"]),
        )
    console.print(group_table)
    if meta["summary"]:
        print_mapping_summary(console, meta["summary"])
    workloads = [f for f in findings if f.kind == "workload-needs-role"]
    if workloads:
        console.print(
            f"[yellow]warning[/] workload-needs-role: {len(workloads)} workload IAM users need an "
            "IAM role, not a person (--format json lists them)",
            highlight=False,
        )
    print_findings(console, [f for f in findings if f.kind != "workload-needs-role"])


# -- apply, status, rollback ------------------------------------------------------------------


def _apply_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]apply[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("actions · {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    )


def _watch(console: Console, work: Any) -> dict[str, Any]:
    from domain.progress import listening

    with _apply_progress(console) as progress:
        bar = progress.add_task("actions", total=None, failed=0)
        failed = {"n": 0}

        def on_event(event: str, data: dict[str, Any]) -> None:
            if event == "apply-start":
                progress.update(bar, total=data["actions"])
            elif event == "action-done":
                if data["status"] == "failed":
                    failed["n"] += 1
                    reason = escape(data["error"] or "")
                    progress.console.print(
                        f"[red]failed[/] {escape(data['action_id'])}: {reason}", highlight=False
                    )
                progress.update(bar, advance=1, failed=failed["n"])

        with listening(on_event):
            return work()


def _print_apply_summary(console: Console, spec: Path | str, summary: dict[str, Any]) -> None:
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
    with imports_without_gc():
        from flows.apply import apply_flow

    summary = _watch(console, lambda: apply_flow(str(spec), plan_id, stage))
    _print_apply_summary(console, spec, summary)
    return summary


def resume_with_progress(console: Console, spec: Path | str, run_id: int) -> None:
    with imports_without_gc():
        from flows.apply import resume

    summary = _watch(console, lambda: resume(spec, run_id))
    if "users" in summary:  # a restore run
        from iamc.retire_views import print_restore

        print_restore(console, summary)
    elif "succeeded" in summary:
        _print_apply_summary(console, spec, summary)
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
    from rich.table import Table

    from engine.migration import Migration
    from engine.runs import list_runs

    table = Table(title="runs")
    for column in ("run", "kind", "status", "plan", "stage", "started", "finished", "error"):
        table.add_column(column)
    with Migration.open(spec) as mig:
        runs = list_runs(mig)
    for run in runs:
        status = _styled(run["status"])
        if run["superseded_by"]:
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
    from rich.table import Table

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
    from engine.migration import Migration
    from engine.runs import run_status

    with Migration.open(spec) as mig:
        status = run_status(mig, run_id)
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
        for error in row["errors"]:
            # A user the live checks refused is left as it was: not an error of AWS's.
            label = "[yellow]refused[/]" if ": refused: " in error else "[red]error[/]"
            console.print(f"{label} {account}: {escape(error)}", highlight=False)
    if run["next"]:
        console.print(f"next: {run['next']}", highlight=False)


def rollback_with_listing(
    console: Console, spec: Path | str, run_id: int, dry_run: bool, user: str | None = None
) -> None:
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
    }
    columns = [c for c in inventory_report.INVENTORY_COLUMNS if c not in ("error", "cis_1_21_why")]
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
        inventory_report.CIS_FAIL: "red",
        inventory_report.CIS_UNKNOWN: "yellow",
    }
    for row in rows:
        cells = [str(row[c]) for c in columns]
        cells[-1] = f"[{styles[row['cis_1_21']]}]{row['cis_1_21']}[/]"
        table.add_row(*cells)
    console.print(table)
    for row in rows:
        if row["cis_1_21_why"]:
            console.print(
                f"{row['account_id']} fails CIS 1.21: {row['cis_1_21_why']}", highlight=False
            )


# -- hard-coded keys (runbook step 4) ---------------------------------------------------------

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
    from domain.progress import listening

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
    from domain import key_report
    from engine.migration import Migration
    from engine.reports import key_scan_report

    with Migration.open(spec) as mig:
        data = key_scan_report(mig)
    findings, problems, unscanned = data["findings"], data["problems"], data["unscanned"]
    if output_format == "json":
        sys.stdout.write(key_report.render_json(findings, problems, unscanned, data["meta"]))
        sys.stdout.write("\n")
        return
    if output_format == "csv":
        sys.stdout.write(key_report.render_csv(findings))
        return
    if output_format == "sarif":
        from importlib.metadata import PackageNotFoundError, version

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


def print_waves_report(console: Console, spec: Path | str, output_format: str = "table") -> None:
    """Per wave: accounts, users migrated, disabled, deleted, CIS 1.21 and what is pending."""
    import json

    from rich.table import Table

    from engine.migration import Migration
    from engine.reports import WAVE_COLUMNS, waves_report

    with Migration.open(spec) as mig:
        rows, meta = waves_report(mig)
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
