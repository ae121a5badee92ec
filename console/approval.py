"""The change board's approval gate in the Prefect UI: the plan, a form, and the decision recorded.

The run publishes the plan as a Markdown artifact and pauses with a form (:class:`ApprovalInput`)
whose description says what is being approved: the plan hash, what each stage does, how many
actions are irreversible, how many users delete deletes and the cap on a run, and a link to
the plan. Nothing that decides is prefilled: the reviewer types the hash they read, and delete
is approved on its own. The decision is recorded like ``iamc approve`` (bound to the plan's
hash), and the plan artifact gets a new version that says who decided what, under which
ticket, and when.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from prefect.input import RunInput
from pydantic import Field, create_model, field_validator

from console.operator import (
    artifact_key,
    artifact_url,
    deployment_name,
    publish_markdown,
    run_logger,
)
from domain.deletion import over_delete_cap, users_to_delete
from domain.errors import PlanError
from domain.plan import Outcome, Plan, Stage
from domain.plan_render import render_markdown
from domain.spec import Decommission
from domain.stages import ALL, approval_choices, approved_with_all, authorised_by
from engine.approvals import (
    MIN_HASH_PREFIX,
    check_quoted_deletes,
    check_reviewed_hash,
    record_decision,
)
from engine.migration import Migration
from engine.reports import load_plan

# One line of text, with something in it: what the server checks before a Resume is accepted
# (both Prefect UIs draw a text field as a one-row text area, where Enter adds a line).
ONE_LINE = r"^[^\r\n]*\S[^\r\n]*$"
# A plan hash as the form shows it: hex, in lines of HASH_LINE characters; whitespace ignored.
HASH_TYPED = r"^\s*([0-9a-fA-F]\s*){12,64}$"
HASH_LINE = 16


def _one_line(name: str, value: Any) -> Any:
    """Strip a text field; refuse one that spans lines."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    if "\n" in value or "\r" in value:
        raise ValueError(f"{name}: one line only (Enter adds a line break in this field)")
    return value


class ApprovalInput(RunInput):
    """The form a change board fills in the Prefect UI to approve or reject a plan.

    Nothing that decides is prefilled: the reviewer types (or pastes) the hash of the plan
    they read, and the decision is refused unless it is (a 12+ character prefix of) the stored
    plan's hash; a malformed hash is refused by the form itself, before the run resumes. No
    stage choice includes delete, which is approved on its own, quoting how many IAM users it
    deletes (``deletes``). Approver and ticket are single lines.
    """

    approver: str = Field(
        min_length=1,
        max_length=120,
        pattern=ONE_LINE,
        description="Who decides: your name or e-mail, as the change record says (one line)",
    )
    ticket: str = Field(
        min_length=1,
        max_length=60,
        pattern=ONE_LINE,
        description="The change ticket that covers this plan, e.g. CHG-1234 (one line)",
    )
    decision: Literal["approve", "reject"] = Field(
        description="approve: the stage may be applied; reject: it may not (recorded, final)"
    )
    # The form offers the registered stages (``_form``): ``all``, then each in runbook order.
    stage: str = Field(
        description="Which stage this decision covers: provision (Identity Center access), "
        "disable (old IAM users made inactive; reversible), all (provision and disable), or "
        "delete (irreversible: approved on its own, with the number of users it deletes)",
    )
    deletes: int | None = Field(
        default=None,
        ge=0,
        description="Only to approve stage delete: how many IAM users the delete stage "
        "deletes, as the description above says. A wrong number is refused",
    )
    plan_hash: str = Field(
        pattern=HASH_TYPED,
        description="Required: type the plan hash shown above, at least its first 12 "
        "characters (or paste it whole; spaces and line breaks are ignored). A hash that is "
        "not the stored plan's is refused",
    )
    comment: str = Field(default="", description="Anything the record should say (optional)")

    @field_validator("approver", "ticket", mode="before")
    @classmethod
    def _single_line(cls, value: Any, info: Any) -> Any:
        return _one_line(info.field_name, value)

    @field_validator("plan_hash", mode="before")
    @classmethod
    def _hex_prefix(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = "".join(value.split()).lower()
        if len(value) < MIN_HASH_PREFIX or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(
                f"plan_hash: give at least {MIN_HASH_PREFIX} hex characters of the plan hash "
                "shown in the form's description"
            )
        return value


def hash_block(plan_hash: str) -> list[str]:
    """The full plan hash as a code block in lines of 16: a dialog clips one long line."""
    lines = [plan_hash[i : i + HASH_LINE] for i in range(0, len(plan_hash), HASH_LINE)]
    return ["```text", *lines, "```"]


def plan_counts(plan: Plan) -> dict[str, Any]:
    """What a change board weighs: users by outcome, changes by stage, irreversible actions."""
    by_stage = Counter(str(a.stage) for a in plan.actions)
    return {
        "users": len(plan.users),
        "outcomes": Counter(str(u.outcome) for u in plan.users),
        "permission_sets": len(plan.permission_sets),
        "assignments": len(plan.assignments),
        "by_stage": by_stage,
        "irreversible": sum(1 for a in plan.actions if a.irreversible),
        "blocking": len(plan.blocking),
    }


def _delete_line(plan: Plan, caps: Decommission) -> str:
    """What approving delete means: irreversible, how many users, and the cap on a run."""
    to_delete = users_to_delete(plan.actions)
    users = sum(len(names) for names in to_delete.values())
    actions = sum(1 for a in plan.actions if a.stage == Stage.DELETE)
    irreversible = sum(1 for a in plan.actions if a.irreversible)
    over = over_delete_cap(to_delete, caps.max_deletes_per_run, caps.max_deletes_per_account)
    return (
        f"- **delete**: deletes **{users} IAM user(s)** in {len(to_delete)} account(s), "
        f"{actions} action(s), **{irreversible} irreversible** (deleted users, keys and "
        "passwords can't be restored). It is approved on its own: choose stage `delete` and "
        f"type **{users}** in *deletes*; `all` never includes it. A delete run stops before its "
        f"first deletion if it would delete more than {caps.max_deletes_per_run} users, or more "
        f"than {caps.max_deletes_per_account} in one account ([decommission] "
        "max_deletes_per_run, max_deletes_per_account)"
        + (f"; **this plan is over the cap**: {'; '.join(over)}" if over else "")
    )


def form_description(
    migration: str,
    plan_id: int,
    plan_hash: str,
    plan: Plan,
    link: str | None,
    caps: Decommission | None = None,
    stage: str | None = None,
) -> str:
    """The Markdown shown above the approval form; ``stage``: the one this run decides on."""
    counts = plan_counts(plan)
    outcomes = counts["outcomes"]
    skipped = sum(n for o, n in outcomes.items() if o.startswith("skip"))
    deciding = f" (stage {stage})" if stage else ""
    lines = [
        f"### Approve plan {plan_id} of {migration}{deciding}?",
        "",
        f"Plan hash, {len(plan_hash)} characters in lines of {HASH_LINE} (type at least the "
        "first 12 into *plan_hash*):",
        "",
        *hash_block(plan_hash),
        "",
        f"- IAM users: {counts['users']}: {outcomes.get(Outcome.MIGRATE, 0)} migrate to "
        f"Identity Center, {outcomes.get(Outcome.RETIRE, 0)} retire (unused), {skipped} left "
        "as they are",
        f"- **provision**: {counts['permission_sets']} permission set(s), "
        f"{counts['assignments']} account assignment(s), {counts['by_stage'].get('provision', 0)}"
        " action(s); reversible (the rollback deployment undoes them)",
        f"- **disable**: {counts['by_stage'].get('disable', 0)} action(s) on the old IAM users; "
        "reversible",
        _delete_line(plan, caps or Decommission()),
        f"- blocking errors: {counts['blocking']}",
        "",
        f"Read the plan first: [plan {plan_id} artifact]({link})"
        if link
        else f"Read the plan first: the 'plan' artifact of this run (plan {plan_id}).",
        "",
        "Fill in who you are and the change ticket (one line each), check the stage you "
        "decide on, type the plan hash you reviewed (at least its first 12 characters: it is "
        "never prefilled, and any other plan's hash is refused), choose approve or reject, "
        "then press Resume.",
    ]
    return "\n".join(lines)


def _form(description: str, stage: str | None = None) -> type[ApprovalInput]:
    """ApprovalInput with this description; the stage prefilled only when it is not delete.

    The plan hash is never prefilled: the reviewer quotes the one they read.
    """
    field = ApprovalInput.model_fields["stage"]
    choices = Literal[tuple(approval_choices())]  # type: ignore[valid-type]
    if stage is None or (stage != ALL and stage not in approved_with_all()):
        # A stage approved on its own (delete) is chosen by the reviewer, never prefilled.
        stage_field = Field(description=field.description)
    else:
        stage_field = Field(default=stage, description=field.description)
    model = create_model("ApprovalInput", __base__=ApprovalInput, stage=(choices, stage_field))
    model._description = description  # what RunInput.with_initial_data sets
    return model


def decision_markdown(plan: Plan, meta: dict[str, Any], latest: dict[str, Any]) -> str:
    """The plan as approved or rejected: the decision first, then the plan."""
    verb = latest["decision"].upper()
    head = [
        f"## {verb}: stage {latest['stage']} by {latest['approver']} (ticket "
        f"{latest['ticket']}) at {latest['at']}",
        "",
        f"Plan hash `{meta['hash']}`."
        + (f" Comment: {latest['comment']}" if latest["comment"] else ""),
        "",
        "---",
        "",
    ]
    return "\n".join(head) + render_markdown(plan, meta)


def _decided(meta: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """A decision already recorded for this stage and this plan's hash, if any."""
    for approval in reversed(meta["approvals"]):
        if approval["stage"] in (authorised_by(stage) or (stage,)) or (
            approval["stage"] == "all" and approval["decision"] == "rejected"
        ):
            return approval
    return None


def request_approval(
    spec_path: str | Path,
    plan_id: int,
    timeout_seconds: int = 7 * 24 * 3600,
    stage: str | None = None,
    *,
    ask_again: bool = True,
) -> dict[str, Any]:
    """Publish the plan, pause for the change board's form, record the decision
    (:func:`ask_for_decision` with the migration opened)."""
    with Migration.open(spec_path) as mig:
        return ask_for_decision(mig, plan_id, timeout_seconds, stage, ask_again=ask_again)


def ask_for_decision(
    mig: Migration,
    plan_id: int,
    timeout_seconds: int = 7 * 24 * 3600,
    stage: str | None = None,
    *,
    ask_again: bool = True,
) -> dict[str, Any]:
    """Publish the plan, pause for the change board's form, record the decision.

    The form's stage is prefilled with ``stage`` unless it is None or delete (the reviewer
    chooses). With ``ask_again=False`` a decision already recorded for the stage is not asked
    again (a Retry, a resumed ``centralize``). A hash that is not the stored plan's is refused,
    as is approving delete without the right number of users it deletes.

    Returns:
        The plan's metadata after the decision: hash, approvals.

    Raises:
        PlanError: the plan has blocking errors, or the form quoted another plan's hash, or
            not the number of users the delete stage deletes.
    """
    from prefect.flow_runs import pause_flow_run

    logger = run_logger()
    spec = mig.spec
    migration = spec.name
    plan, meta = load_plan(mig, plan_id)
    key = artifact_key(migration, "plan-approval", plan.wave_name)
    earlier = None if ask_again or stage is None else _decided(meta, stage)
    if earlier is not None:
        logger.info(
            "plan %s stage %s was already %s by %s (ticket %s) at %s: not asking again",
            plan_id,
            earlier["stage"],
            earlier["decision"],
            earlier["approver"],
            earlier["ticket"],
            earlier["at"],
        )
        return meta
    # What holds the stage asked about (all of them when the form may pick any): a hard-coded
    # key holds disable and delete, not provision.
    blocking = plan.blocking_for(stage) if stage else plan.blocking
    if blocking:
        raise PlanError(
            f"plan {plan_id} has {len(blocking)} blocking error(s) for stage {stage or 'all'} "
            "and can't be approved: "
            f"fix them (see the plan artifact), then compute a new plan with "
            f"'{mig.hint('plan')}'"
        )
    artifact = publish_markdown(
        key,
        render_markdown(plan, meta),
        f"Plan {plan_id} of {migration}, hash {meta['hash'][:12]}: waiting for the change "
        "board's decision (the paused run's Resume form)",
    )
    link = artifact_url(artifact)
    form = _form(
        form_description(migration, plan_id, meta["hash"], plan, link, spec.decommission, stage),
        stage,
    )
    logger.info(
        "plan %s (hash %s) published; waiting for a decision in this run's Resume form",
        plan_id,
        meta["hash"][:12],
    )
    # The paused run reads its state every 2 s (Prefect's default is 10 s): an approver who
    # presses Resume in the UI sees the run go on at once, for one small API read per poll.
    answer = pause_flow_run(
        wait_for_input=form,
        timeout=timeout_seconds,
        poll_interval=2,
        key=f"approval-{uuid.uuid4().hex[:12]}",
    )
    return _record_answer(mig, plan_id, plan, meta, answer, key)


def _record_answer(
    mig: Migration, plan_id: int, plan: Plan, meta: dict[str, Any], answer: Any, key: str
) -> dict[str, Any]:
    """Check the form's answer against the plan, record it, and show it in the plan artifact.

    Raises:
        PlanError: The answer quoted another plan's hash or a wrong number of deletes;
            nothing was recorded.
    """
    logger = run_logger()
    migration = mig.spec.name
    decision = "approved" if answer.decision == "approve" else "rejected"
    try:
        check_reviewed_hash(plan_id, meta["hash"], answer.plan_hash)
        check_quoted_deletes(plan_id, plan, answer.stage, decision, answer.deletes)
    except PlanError as err:
        raise PlanError(
            f"{err}. Nothing was recorded; run the deployment "
            f"'{deployment_name('plan-and-approve', migration)}' again and quote the hash of "
            "the plan you reviewed (and, approving delete, the number of users it deletes)"
        ) from None
    decided = record_decision(
        mig,
        plan_id,
        approver=answer.approver,
        ticket=answer.ticket,
        decision=decision,
        stage=answer.stage,
        expected_hash=answer.plan_hash,
        comment=answer.comment,
        deletes=answer.deletes,
    )
    latest = decided["approvals"][-1]
    logger.info(
        "plan %s stage %s %s by %s (ticket %s)",
        plan_id,
        latest["stage"],
        latest["decision"],
        latest["approver"],
        latest["ticket"],
    )
    publish_markdown(
        key,
        decision_markdown(plan, {**meta, **decided}, latest),
        f"Plan {plan_id} of {migration}, hash {meta['hash'][:12]}: {latest['decision']} "
        f"(stage {latest['stage']}) by {latest['approver']}, ticket {latest['ticket']}, at "
        f"{latest['at']}",
    )
    return decided
