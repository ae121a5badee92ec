"""A change board's decision on a plan: bound to the plan's hash, once per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from domain.errors import PlanError
from domain.plan import Plan, Stage
from domain.spec import load_spec
from state.reports import get_plan_info, plan_meta
from state.store import Store

APPROVAL_STAGES = ("all", *(s.value for s in Stage))


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
        info = get_plan_info(store, spec, plan_id)
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
        blocking = Plan.from_content(info.content).blocking_for(stage)
        if decision == "approved" and blocking:
            raise PlanError(
                f"plan {plan_id} has {len(blocking)} blocking error(s) for stage {stage}: "
                "fix them and re-plan"
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
        return plan_meta(store.get_plan(plan_id))
