"""A change board's decision on a plan: bound to the plan's hash, once per stage."""

from __future__ import annotations

import re
from typing import Any, Literal

from domain.deletion import deletes_in
from domain.errors import PlanError
from domain.plan import Plan, Stage
from domain.stages import ALL, approval_choices, approved_with_all, authorised_by
from engine.migration import Migration
from engine.reports import get_plan_info, plan_meta
from state.plans import ApprovalInfo, PlanInfo

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


def check_quoted_deletes(
    plan_id: int, plan: Plan, stage: str, decision: str, deletes: int | None
) -> None:
    """Approving the delete stage quotes how many IAM users it deletes; it must be right.

    Raises:
        PlanError: missing or wrong (the message says the plan's number), or quoted for
            another stage; nothing recorded.
    """
    if stage != Stage.DELETE and deletes is not None:
        raise PlanError(
            f"plan {plan_id}: a number of users to delete goes with stage delete only, not "
            f"{stage} (all is provision and disable, never delete): refusing, nothing was "
            "recorded"
        )
    if stage != Stage.DELETE or decision != "approved":
        return
    actual = deletes_in(plan)
    if deletes is None:
        raise PlanError(
            f"plan {plan_id}: approving the delete stage quotes how many IAM users it deletes "
            f"(--deletes {actual}; deleting can't be undone): refusing, nothing was recorded"
        )
    if deletes != actual:
        raise PlanError(
            f"plan {plan_id}'s delete stage deletes {actual} IAM user(s), not the {deletes} "
            "quoted: refusing, nothing was recorded; review the plan's delete stage again"
        )


def _overlapping(stage: str, decision: str) -> set[str]:
    """The stages whose earlier decision stops this one being recorded."""
    if stage == "all":
        # An approval of "all" is not one of delete; a rejection of "all" rejects everything.
        return set(approval_choices()) if decision == "rejected" else {ALL, *approved_with_all()}
    return {stage, ALL} if stage in approved_with_all() else {stage}


def unapproved_reason(info: PlanInfo, stage: str, spec_path: str) -> str | None:
    """Why the plan's stage may not be applied (a rejection, no approval); None: approved.

    A rejection of the stage, or of "all", holds; only ``domain.stages.authorised_by`` approvals of
    this plan's hash count.
    """
    for approval in info.approvals:
        if approval.stage in (stage, "all") and approval.decision != "approved":
            return (
                f"plan {info.id} stage {approval.stage} was {approval.decision} by "
                f"{approval.approver} (ticket {approval.ticket}): refusing"
            )
    authorising = authorised_by(stage)
    if any(a.stage in authorising and a.plan_hash == info.hash for a in info.approvals):
        return None
    command = f"'iamc approve {info.id} -c {spec_path} --stage {stage}"
    if stage == Stage.DELETE:
        command += f" --deletes {deletes_in(Plan.from_content(info.content))}"
    command += f" --by NAME --ticket ID --hash {info.hash[:12]}'"
    earlier = [a for a in info.approvals if a.stage == "all" and a.decision == "approved"]
    if stage == Stage.DELETE and earlier:
        return (
            f"plan {info.id} is not approved for stage delete: its approval of stage all "
            f"({_who(earlier[-1])}) covers provision and disable, never the irreversible delete "
            f"stage: refusing; approve the delete stage on its own after review: {command}"
        )
    return f"plan {info.id} is not approved for stage {stage}: refusing; after review run {command}"


def _who(approval: ApprovalInfo) -> str:
    return f"by {approval.approver}, ticket {approval.ticket}"


def record_decision(
    mig: Migration,
    plan_id: int,
    *,
    approver: str,
    ticket: str,
    decision: Literal["approved", "rejected"] = "approved",
    stage: str = "all",
    expected_hash: str | None,
    comment: str = "",
    deletes: int | None = None,
) -> dict[str, Any]:
    """Record who approved (or rejected) which plan hash, for which stage, and when.

    Args:
        stage: provision, disable, delete, or all (provision and disable: never delete).
        expected_hash: The plan hash the reviewer read (at least its first 12 hex characters):
            required, so a decision always binds the content that was reviewed.
        deletes: Approving delete: how many IAM users its delete stage deletes (required).

    Raises:
        PlanError: unknown plan; its content no longer matches its hash; the reviewer's hash
            missing, too short or different; the quoted deletes missing or wrong; blocking
            errors; a decision already recorded for that stage.
    """
    if stage not in approval_choices():
        raise PlanError(f"--stage: expected one of {', '.join(approval_choices())}, got {stage!r}")
    if not approver.strip() or not ticket.strip():
        raise PlanError("an approval needs both --by (who) and --ticket (the change record)")
    store = mig.store
    info = get_plan_info(store, mig.spec.name, plan_id)
    actual = Plan.from_content(info.content).content_hash()
    if actual != info.hash:
        raise PlanError(
            f"plan {plan_id} changed since it was computed (stored hash {info.hash[:12]}, "
            f"content hash {actual[:12]}): refusing; compute a new plan with 'iamc plan'"
        )
    check_reviewed_hash(plan_id, info.hash, expected_hash)
    plan = Plan.from_content(info.content)
    check_quoted_deletes(plan_id, plan, stage, decision, deletes)
    blocking = plan.blocking_for(stage)
    if decision == "approved" and blocking:
        raise PlanError(
            f"plan {plan_id} has {len(blocking)} blocking error(s) for stage {stage}: "
            "fix them and re-plan"
        )
    rejected_all = [a for a in info.approvals if a.stage == "all" and a.decision != "approved"]
    if stage == Stage.DELETE and decision == "approved" and rejected_all:
        raise PlanError(
            f"plan {plan_id} stage all was rejected ({_who(rejected_all[-1])}), which "
            "holds delete too: refusing; make a new plan"
        )
    overlapping = _overlapping(stage, decision)
    earlier = store.plans.record_approval(
        plan_id,
        stage=stage,
        decision=decision,
        approver=approver,
        ticket=ticket,
        comment=comment,
        plan_hash=info.hash,
        overlapping_stages=overlapping,
        # Checked above for the message, and again with the plan locked: a rejection of "all"
        # recorded meanwhile by another approver still holds this delete.
        rejected_stages=frozenset(
            {ALL} if stage == Stage.DELETE and decision == "approved" else ()
        ),
    )
    if earlier is not None:
        raise PlanError(
            f"plan {plan_id} stage {earlier.stage} was already {earlier.decision} by "
            f"{earlier.approver} (ticket {earlier.ticket}) at {earlier.at:%Y-%m-%d %H:%M}"
        )
    return plan_meta(store.plans.get_plan(plan_id))
