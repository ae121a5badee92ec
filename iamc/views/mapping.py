"""What a person watches of the identity mapping step: its summary, the mapping report and CSV."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from domain import csv_export
from domain.records import Finding
from domain.spec import load_spec
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from engine.reports import latest_mapping
from iamc.views.inventory import print_findings

if TYPE_CHECKING:
    from state.identity import MappingInfo


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
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
    with imports_without_gc():
        from flows.mapping import run_mapping

    # Loaded (and validated) as the option was parsed: this is the cached spec.
    central = load_spec(spec).central_account
    to = f"the central account {central}'s principals" if central else "Identity Center identities"
    with console.status(f"mapping IAM users to {to}…"):
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
    if summary.get("identity_source"):
        console.print(
            f"  identities of {summary['identity_source']}: {summary['identity_users']} users",
            highlight=False,
        )
    console.print(
        f"  {summary['identities']} identities ({summary['identities_in_several_accounts']} with "
        f"IAM users in several accounts); matched by rule: "
        + (", ".join(f"{rule} {n}" for rule, n in summary["by_rule"].items()) or "-")
        + (f"; ambiguous {summary['ambiguous']}" if summary.get("ambiguous") else ""),
        highlight=False,
    )
    groups = (
        # A trust policy can't name a group: the central-roles target gives access per person.
        f"  IAM groups: {summary['groups']}, not mapped (the central account's access is per "
        "person; each group's access reaches its members)"
        if summary.get("central_account")
        else f"  IAM groups: {summary['groups_matched']} of {summary['groups']} mapped to IdP "
        f"groups ({summary['groups_unmatched']} unmatched, {summary['groups_ambiguous']} "
        "ambiguous)"
    )
    console.print(
        f"{groups}; {summary['workload_users']} workload users need roles, not people",
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
    mapping, tags, meta = Migration.call(latest_mapping, spec)
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
