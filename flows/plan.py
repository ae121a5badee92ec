"""Runbook step 6: compute the dry-run plan, and record a change board's approval of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from iamc.errors import IamcError
from iamc.plan import Plan, Stage, build_plan, sha256_of
from iamc.plan_render import render_assignments_csv, render_json, render_markdown
from iamc.spec import MigrationSpec, load_spec
from state import Store
from tasks.synthesis import synthesize

log = logging.getLogger(__name__)

APPROVAL_STAGES = ("all", *(s.value for s in Stage))


class PlanError(IamcError):
    """The plan can't be computed, found, or approved as asked."""

    exit_code = 2


def _plan_settings(spec: MigrationSpec) -> dict[str, Any]:
    return {
        "inactive_days": spec.decommission.inactive_days,
        "bake_days": spec.decommission.bake_days,
        "protected_users": list(spec.protected_users),
        "protected_tag": spec.protected_tag,
    }


@task(name="compute-plan", cache_policy=NO_CACHE, persist_result=False)
def compute_plan(spec: MigrationSpec, store: Store, migration_id: int) -> Plan:
    snapshot = store.latest_snapshot(migration_id)
    if snapshot is None:
        raise PlanError(f"no inventory yet for migration {spec.name!r}: run 'iamc inventory'")
    mapping = store.latest_mapping(migration_id)
    if mapping is None:
        raise PlanError(f"no identity mapping yet for migration {spec.name!r}: run 'iamc map'")
    if mapping.snapshot_id != snapshot.id:
        raise PlanError(
            f"the latest mapping (run {mapping.run_id}) was computed from inventory snapshot "
            f"{mapping.snapshot_id}, but the latest inventory is snapshot {snapshot.id}: "
            "run 'iamc map' again so the plan reads one consistent picture"
        )
    inventories = store.load_snapshot(snapshot.id)
    synthesis = synthesize(
        inventories, mapping.user_mappings, mapping.group_mappings, mapping.identity_groups
    )
    return build_plan(
        migration=spec.name,
        inventory_snapshot_id=snapshot.id,
        mapping_run_id=mapping.run_id,
        inventories=inventories,
        user_mappings=mapping.user_mappings,
        group_mappings=mapping.group_mappings,
        synthesis=synthesis,
        settings=_plan_settings(spec),
    )


def _summary(plan: Plan) -> dict[str, Any]:
    from collections import Counter

    return {
        "users": len(plan.users),
        "outcomes": dict(sorted(Counter(str(u.outcome) for u in plan.users).items())),
        "permission_sets": len(plan.permission_sets),
        "assignments": len(plan.assignments),
        "actions": dict(sorted(Counter(str(a.stage) for a in plan.actions).items())),
        "irreversible": sum(1 for a in plan.actions if a.irreversible),
        "blocking": len(plan.blocking),
    }


def write_plan_files(plan: Plan, meta: dict[str, Any], out_dir: Path) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": out_dir / "plan.md",
        "json": out_dir / "plan.json",
        "assignments": out_dir / "assignments.csv",
    }
    files["markdown"].write_text(render_markdown(plan, meta), encoding="utf-8")
    files["json"].write_text(render_json(plan, meta) + "\n", encoding="utf-8")
    files["assignments"].write_text(render_assignments_csv(plan), encoding="utf-8")
    return {kind: str(path) for kind, path in files.items()}


@flow(name="plan", log_prints=False)
def plan_flow(spec_path: str, out_dir: str | None = None) -> dict[str, Any]:
    """Compute the plan from the latest inventory and mapping, store it, write its files."""
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        migration_id = store.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.start_run(migration_id, "plan", {"spec": spec_path})
        try:
            plan = compute_plan(spec, store, migration_id)
            content = plan.content()
            content_hash = sha256_of(content)
            plan_id, reused = store.save_plan(
                migration_id, run_id, content_hash, content, len(plan.blocking)
            )
            info = store.get_plan(plan_id)
            meta = _meta(info)
            target = Path(out_dir) if out_dir else Path(spec_path).parent / "plans" / str(plan_id)
            files = write_plan_files(plan, meta, target)
            markdown = render_markdown(plan, meta)
            create_markdown_artifact(
                key=f"plan-{spec.name}".lower().replace("_", "-"),
                markdown=markdown,
                description=f"Plan {plan_id} of {spec.name}, hash {content_hash[:12]}",
            )
            summary = {"plan_id": plan_id, "hash": content_hash, "reused": reused, **_summary(plan)}
        except BaseException as err:
            store.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        store.finish_run(run_id, "succeeded", summary=summary)
    return {**summary, "files": files}


def _meta(info: Any) -> dict[str, Any]:
    return {
        "plan_id": info.id,
        "hash": info.hash,
        "created": info.created.isoformat(),
        "approvals": [
            {
                "stage": a.stage,
                "decision": a.decision,
                "approver": a.approver,
                "ticket": a.ticket,
                "comment": a.comment,
                "at": a.at.isoformat(),
            }
            for a in info.approvals
        ],
    }


def load_plan(spec_path: str | Path, plan_id: int) -> tuple[Plan, dict[str, Any]]:
    """A stored plan and its metadata (hash, approvals), checked against its own hash."""
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        info = _get_plan(store, spec, plan_id)
    return Plan.from_content(info.content), _meta(info)


def _get_plan(store: Store, spec: MigrationSpec, plan_id: int) -> Any:
    info = store.get_plan(plan_id)
    if info is None or info.migration != spec.name:
        raise PlanError(f"no plan {plan_id} in migration {spec.name!r}")
    return info


def record_decision(
    spec_path: str | Path,
    plan_id: int,
    *,
    approver: str,
    ticket: str,
    decision: Literal["approved", "rejected"] = "approved",
    stage: str = "all",
    expected_hash: str | None = None,
    comment: str = "",
) -> dict[str, Any]:
    """Record who approved (or rejected) which plan hash, for which stage, and when.

    Raises:
        PlanError: unknown plan; its content no longer matches its hash; the reviewer's hash
            differs; blocking errors; a decision already recorded for that stage.
    """
    if stage not in APPROVAL_STAGES:
        raise PlanError(f"--stage: expected one of {', '.join(APPROVAL_STAGES)}, got {stage!r}")
    if not approver.strip() or not ticket.strip():
        raise PlanError("an approval needs both --by (who) and --ticket (the change record)")
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        info = _get_plan(store, spec, plan_id)
        actual = Plan.from_content(info.content).content_hash()
        if actual != info.hash:
            raise PlanError(
                f"plan {plan_id} changed since it was computed (stored hash {info.hash[:12]}, "
                f"content hash {actual[:12]}): refusing; compute a new plan with 'iamc plan'"
            )
        if expected_hash and not info.hash.startswith(expected_hash):
            raise PlanError(
                f"plan {plan_id} has hash {info.hash[:12]}, not the {expected_hash[:12]} that was "
                "reviewed: refusing; review the current plan.md"
            )
        if decision == "approved" and info.blocking:
            raise PlanError(
                f"plan {plan_id} has {info.blocking} blocking error(s): fix them and re-plan"
            )
        # "all" overlaps every stage; a stage overlaps itself and "all".
        overlapping = set(APPROVAL_STAGES) if stage == "all" else {stage, "all"}
        earlier = store.record_approval(
            plan_id,
            stage=stage,
            decision=decision,
            approver=approver,
            ticket=ticket,
            comment=comment,
            plan_hash=info.hash,
            overlapping_stages=overlapping,
        )
        if earlier is not None:
            raise PlanError(
                f"plan {plan_id} stage {earlier.stage} was already {earlier.decision} by "
                f"{earlier.approver} (ticket {earlier.ticket}) at {earlier.at:%Y-%m-%d %H:%M}"
            )
        return _meta(store.get_plan(plan_id))


class ApprovalInput(RunInput):
    """The form a change board fills in the Prefect UI to approve or reject a plan."""

    approver: str
    ticket: str
    decision: Literal["approve", "reject"]
    stage: Literal["all", "provision", "disable", "delete"] = "all"
    comment: str = ""


@flow(name="plan-and-approve", log_prints=False)
def plan_and_approve(
    spec_path: str, plan_id: int | None = None, timeout_seconds: int = 7 * 24 * 3600
) -> dict[str, Any]:
    """Compute (or take) a plan, publish it as a Markdown artifact, and wait for a decision.

    The run pauses until someone resumes it from the UI (or ``resume_flow_run``) with an
    :class:`ApprovalInput`; the decision is recorded like ``iamc approve``.
    """
    if plan_id is None:
        plan_id = plan_flow(spec_path)["plan_id"]
    plan, meta = load_plan(spec_path, plan_id)
    create_markdown_artifact(
        key=f"plan-{plan_id}-for-approval",
        markdown=render_markdown(plan, meta),
        description=f"Plan {plan_id}: approve or reject from this run's Resume form",
    )
    answer = pause_flow_run(wait_for_input=ApprovalInput, timeout=timeout_seconds)
    decision = "approved" if answer.decision == "approve" else "rejected"
    return record_decision(
        spec_path,
        plan_id,
        approver=answer.approver,
        ticket=answer.ticket,
        decision=decision,
        stage=answer.stage,
        comment=answer.comment,
    )
