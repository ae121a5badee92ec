"""A change board's decision on a plan: bound to the plan's hash, once per stage."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from domain.errors import PlanError
from domain.plan import Plan, Stage
from domain.spec import load_spec
from state.reports import get_plan_info, plan_meta
from state.store import Store

APPROVAL_STAGES = ("all", *(s.value for s in Stage))
# A reviewer proves they read this plan by quoting its hash: 12 hex digits (48 bits) at least,
# so no shorter prefix, and no other plan's hash, can pass for it by chance.
MIN_HASH_PREFIX = 12
_HEX = re.compile(r"[0-9a-f]+")


def check_reviewed_hash(plan_id: int, stored_hash: str, reviewed: str | None) -> None:
    """The hash the reviewer quotes must be the stored plan's, 12 hex characters at least.

    Raises:
        PlanError: missing, too short, not hex, or another plan's hash; the message names
            the stored hash's first 12 characters to compare with plan.md.
    """
    stored = stored_hash[:MIN_HASH_PREFIX]
    given = (reviewed or "").strip().lower()
    if not given:
        raise PlanError(
            f"plan {plan_id}: an approval must quote the hash the reviewer read in plan.md "
            f"(--hash, at least {MIN_HASH_PREFIX} hex characters; this plan's begins "
            f"{stored}): refusing"
        )
    if len(given) < MIN_HASH_PREFIX or not _HEX.fullmatch(given):
        raise PlanError(
            f"plan {plan_id}: --hash {reviewed!r} is not at least {MIN_HASH_PREFIX} hex "
            f"characters of a plan hash (this plan's begins {stored}): refusing"
        )
    if not stored_hash.startswith(given):
        raise PlanError(
            f"plan {plan_id} has hash {stored}, not the {given[:MIN_HASH_PREFIX]} that was "
            "reviewed: refusing; review the current plan.md"
        )


def record_decision(
    spec_path: str | Path,
    plan_id: int,
    *,
    approver: str,
    ticket: str,
    decision: Literal["approved", "rejected"] = "approved",
    stage: str = "all",
    expected_hash: str | None,
    comment: str = "",
) -> dict[str, Any]:
    """Record who approved (or rejected) which plan hash, for which stage, and when.

    Args:
        expected_hash: The plan hash the reviewer read (at least its first 12 hex characters):
            required, so a decision always binds the content that was reviewed.

    Raises:
        PlanError: unknown plan; its content no longer matches its hash; the reviewer's hash
            missing, too short or different; blocking errors; a decision already recorded for
            that stage.
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
        check_reviewed_hash(plan_id, info.hash, expected_hash)
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
