"""Each runbook step's result as a Prefect artifact, keyed per migration so it versions.

Publishers are called by :func:`console.operator.operator_step` when a flow ends, with the flow's
spec path, its arguments and its result (or the operator error it ended with). They read the
state store, never AWS.
"""

from __future__ import annotations

from typing import Any

from console.operator import artifact_key, publish_table
from domain.errors import InventoryIncompleteError
from domain.inventory_report import CIS_PASS, totals
from domain.records import MatchStatus
from engine.migration import Migration
from engine.progress import account_names, run_of_flow_run
from engine.reports import inventory_report, latest_mapping
from engine.runs import run_status


def _inventory_figures(r: dict[str, Any]) -> dict[str, Any]:
    """An account's figures in the inventory table: blank, never 0, for one not read."""

    def n(key: str) -> Any:
        return None if r["error"] else r[key]

    return {
        "IAM users": n("users"),
        "human": n("human"),
        "workload": n("workload"),
        "unused": n("unused"),
        "protected": n("protected"),
        "active keys": n("active_keys"),
        "keys used ≤90d": n("keys_used_90d"),
        "console without MFA": n("console_without_mfa"),
        # The verdict first; why it fails follows (cut short, whole in the description).
        "CIS 1.21": f"{r['cis_1_21']}: {r['cis_1_21_why']}"
        if r["cis_1_21"] != CIS_PASS and r["cis_1_21_why"]
        else r["cis_1_21"],
        "long-lived keys left": n("long_lived_keys"),
    }


def publish_inventory(spec_path: str, arguments: dict[str, Any], outcome: Any) -> None:
    """Per account: IAM users by class, keys, console users without MFA, the CIS 1.21 verdict."""
    if not isinstance(outcome, dict | InventoryIncompleteError):
        return  # nothing was stored: no snapshot of this run to show
    with Migration.open(spec_path) as mig:
        rows, meta, _ = inventory_report(mig)
    table = [
        {
            "account": r["account_id"],
            "name": r["account_name"],
            # First, where it is seen without scrolling: an account not read is not one
            # without users.
            "why not read": r["error"],
            **_inventory_figures(r),
        }
        for r in rows
    ]
    total = totals(rows)
    unread = sum(1 for r in rows if r["error"])
    read = f" ({unread} not read; the users are those of the {total['accounts'] - unread} read)"
    description = (
        f"**Inventory of {meta['migration']}**, snapshot {meta['snapshot_id']} (run "
        f"{meta['run_id']}): {total['accounts']} accounts, {total['users']} IAM users"
        f"{read if unread else ''}. "
        f"CIS 1.21: {total['accounts_passing']} pass, {total['accounts_failing']} fail, "
        f"{total['accounts_unknown']} unknown (not read)."
    )
    if isinstance(outcome, InventoryIncompleteError):
        description += (
            f" **Incomplete:** {len(outcome.failures)} account(s) could not be read (see "
            "'why not read'); a plan made from it is blocked."
        )
    publish_table(artifact_key(meta["migration"], "inventory"), table, description)


def publish_mapping(spec_path: str, arguments: dict[str, Any], outcome: Any) -> None:
    """The human IAM users that map to no identity, or to several: what the IdP team acts on."""
    if not isinstance(outcome, dict):
        return
    with Migration.open(spec_path) as mig:
        mapping, tags, meta = latest_mapping(mig)
    keys = meta["tag_keys"] or ["email"]
    table = [
        {
            "account": m.account_id,
            "IAM user": m.iam_user,
            "status": str(m.status),
            "candidates": ", ".join(m.candidates),
            "email tag": next(
                (v for k in keys if (v := tags.get((m.account_id, m.iam_user), {}).get(k))), ""
            ),
            "why": m.reason,
        }
        for m in mapping.user_mappings
        if m.status != MatchStatus.MATCHED
    ]
    summary = meta["summary"]
    description = (
        f"**Mapping of {meta['migration']}** (run {meta['run_id']}, snapshot "
        f"{meta['snapshot_id']}): {summary.get('iam_users', '?')} human IAM users, "
        f"{summary.get('matched', '?')} matched, {summary.get('unmatched', '?')} unmatched, "
        f"{summary.get('ambiguous', '?')} ambiguous. The rows below are not migrated until the "
        + (
            f"{summary['identity_source']} has a principal for each (an IAM user or federated "
            "role tagged with their e-mail), or an override names it."
            if summary.get("central_account")
            else "IdP team provisions (or disambiguates) them, or an override names their identity."
        )
    )
    if not table:
        table = [{"account": "", "IAM user": "", "status": "every human IAM user matched"}]
    publish_table(artifact_key(meta["migration"], "mapping"), table, description)


def apply_run_id(mig: Migration, arguments: dict[str, Any], outcome: Any, kind: str) -> int | None:
    """The state-store run a flow run worked on: from its result, or the journal's records."""
    if isinstance(outcome, dict) and outcome.get("run_id") is not None:
        return int(outcome["run_id"])
    from console.operator import flow_run_id

    current = flow_run_id()
    found = run_of_flow_run(mig, kind, current) if current else None
    return found if found is not None else arguments.get("resume_run_id")


def status_table(mig: Migration, run_id: int) -> tuple[list[dict[str, Any]], str, str]:
    """``iamc status``'s content as one table: (rows, description, artifact key).

    The key is ``<migration>-<kind>-<stage>[-<wave>]`` (``acme-apply-disable-wave-1``).
    """
    status = run_status(mig, run_id)
    run = status["run"]
    names = account_names(mig)
    rollback = run["kind"] == "rollback"
    rows = []
    for account, now in status["stage"].items():
        own = status["accounts"].get(account)
        did = "-"
        if own:
            parts = (
                [f"{own['rolled_back']} undone"]
                if rollback
                else [f"{own['done']} done", f"{own['adopted']} adopted"]
            )
            if own["failed"]:
                parts.append(f"{own['failed']} failed")
            did = ", ".join(parts)
        rows.append(
            {
                "account": account,
                "name": names.get(account, "management account" if account == "management" else ""),
                "state": _state(now),
                "reasons": "; ".join(_short_reason(e) for e in [*now["refusals"], *now["errors"]]),
                "done": now["done"],
                "adopted": now["adopted"],
                "pending": now["pending"],
                "failed": now["failed"],
                "rolled back": now["rolled_back"],
                f"run {run['id']} did": did,
            }
        )
    failed = sum(r["failed"] for r in rows)
    refused = sum(now.get("refused", 0) for now in status["stage"].values())
    description = (
        f"**Run {run['id']}**: {run['kind']} of plan {run['plan_id']}, stage {run['stage']}: "
        f"**{run['status']}**"
    )
    if run["superseded_by"]:
        description += f", superseded by run {run['superseded_by']}"
    down = [a for a, now in status["stage"].items() if now.get("account_failed")]
    if failed:
        description += f". {failed} action(s) failed."
    elif not down:
        description += ". No action failed."
    else:
        description += "."
    if down:
        description += (
            f" **{len(down)} account(s) could not be worked on** ({', '.join(down)}): their "
            "actions are pending; the reason is in their row."
        )
    if refused:
        description += (
            f" {refused} user(s) refused by the live checks before any change (reasons below):"
            " they stay as they are until the cause is gone and the run is resumed."
        )
    if run["next"] and run["status"] in ("failed", "interrupted"):
        description += (
            " Next: fix the cause in the reasons below, then press **Retry** on this flow run "
            f"(from a shell: `{run['next']}`)."
        )
    key = artifact_key(mig.spec.name, f"{run['kind']}-{run['stage']}", run["wave"])
    return rows, description, key


def _state(row: dict[str, Any]) -> str:
    if row["failed"] or row.get("account_failed"):
        return "FAILED"
    if row.get("refused"):
        return f"REFUSED {row['refused']} user(s)"
    return "pending" if row["pending"] else "done"


def _short_reason(error: str) -> str:
    """``AWS's reason (target)``: the reason first, so a cell cut short still shows it; the
    action's own restatement of its target left out."""
    target, _, rest = error.partition(": ")
    if " FAILED: " in rest:
        return f"{rest.split(' FAILED: ', 1)[1]} ({target})"
    return error


def publish_apply(spec_path: str, arguments: dict[str, Any], outcome: Any) -> None:
    """Per account: done, adopted, pending, failed, refused, with the reasons (AWS's, and the
    live preconditions' for a refused user), as ``iamc status`` shows them."""
    with Migration.open(spec_path) as mig:
        run_id = apply_run_id(mig, arguments, outcome, "apply")
        if run_id is None:
            return  # refused before a run was recorded: nothing changed, the message says why
        rows, description, key = status_table(mig, run_id)
        hint = f"`{mig.hint(f'status {run_id}')}` lists every reason"
    publish_table(key, rows, description, hint)


def publish_rollback(spec_path: str, arguments: dict[str, Any], outcome: Any) -> None:
    """Per account: what the rollback undid and what is left, as ``iamc status`` shows it."""
    if isinstance(outcome, dict) and outcome.get("dry_run"):
        return
    with Migration.open(spec_path) as mig:
        run_id = apply_run_id(mig, arguments, outcome, "rollback")
        if run_id is None:
            return
        rows, description, key = status_table(mig, run_id)
        hint = f"`{mig.hint(f'status {run_id}')}` lists every reason"
    publish_table(key, rows, description, hint)
