"""The plan step's views: the computed plan's summary, a stored plan, a plan file checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from domain.errors import InputFileError, PlanMismatchError
from domain.plan_render import render_json, render_markdown
from domain.plan_verify import compare_plan_file
from domain.stages import authorised_by, stage_names
from engine.migration import Migration
from engine.prefect_runtime import imports_without_gc
from engine.reports import load_plan
from iamc.views.retire import print_delete_preconditions


def plan_with_summary(
    console: Console, spec: Path | str, out: Path | None, wave: str | None = None
) -> dict[str, Any]:
    """Run the plan flow and print what a reviewer needs first."""
    # Deferred: the flow imports Prefect, which reads its settings (the API the
    # command chose) at import; this module's read-only commands never import it.
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
    stages = stage_names()  # runbook order
    if result.get("target") == "central-roles":
        creates = (
            f"to create: {result['member_roles']} role(s) in member accounts for "
            f"{result['permission_sets']} distinct access(es), trusted only by their people; "
            f"{result['central_actions']} group/policy/membership action(s) in the identity "
            "account (an identical role already there is adopted)"
        )
    else:
        creates = (
            f"to create: {result['permission_sets']} permission set(s), "
            f"{result['assignments']} account assignment(s)"
            + (
                f"; {result['permission_set_updates']} update(s) of the organization's sets"
                if result.get("permission_set_updates")
                else ""
            )
            + " (a set the organization already has for the same access is adopted)"
        )
    return [
        head,
        f"IAM users: {result['users']} ({_counted(result['outcomes'])})",
        creates,
        f"actions by stage: {_counted(result['actions'], stages)}; "
        f"{result['irreversible']} of them irreversible (stage delete)",
    ]


def show_plan(console: Console, spec: Path | str, plan_id: int, output_format: str) -> None:
    plan, meta = Migration.call(load_plan, spec, plan_id)
    if output_format == "json":
        sys.stdout.write(render_json(plan, meta) + "\n")
        return
    # Deferred: rich.markdown imports markdown-it (~0.2 s), which only this format needs.
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
    print_delete_preconditions(console, spec, plan_id)


def verify_plan_file(console: Console, spec: Path | str, path: Path) -> None:
    """Tell a change board whether ``path`` is the stored plan, and its approvals per stage.

    Raises:
        InputFileError: the file is not a plan.json.
        PlanMismatchError: the file's content or hash differs from the stored plan's.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputFileError(str(path), f"not a readable plan.json: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("plan_id"), int):
        raise InputFileError(str(path), "no plan_id: not a plan.json written by 'iamc plan'")
    plan_id = data["plan_id"]
    plan, meta = Migration.call(load_plan, spec, plan_id)
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
    for stage in stage_names():
        decisions = [
            a
            for a in meta["approvals"]
            if a["stage"] in authorised_by(stage)
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
