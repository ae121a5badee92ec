"""The engine's apply of one plan stage: checked, leased, journaled, recorded.

Every stage runs the same way whatever it does (``domain.stages`` says what that is): the plan
must be intact, approved for the stage and of the spec's wave; the stage's lease is taken; its
checks before the run (``before_run``) and the read-only preflight pass; then its per-account
driver runs every action through ``engine.executor.Executor``, which journals each step.
(The rollback is ``engine.rollback``.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain import stages as registry
from domain.errors import ApplyFailed, ApplyRefused, ConflictError, IamcError
from domain.plan import Plan, PlanAction
from domain.progress import emit
from domain.runs import APPLY_RUN
from domain.spec import MigrationSpec
from domain.stages import StageDefinition
from engine.account_work import run_accounts
from engine.approvals import unapproved_reason
from engine.executor import Executor
from engine.lease import LeaseLost, StageLease, stage_lease
from engine.migration import Migration
from engine.preconditions import preconditions_of
from engine.prefect_runtime import old_objects_frozen
from engine.preflight import preflight
from engine.runs import check_resumable, open_run
from engine.stage_run import StageRun, refused_by_plan, utc_now
from state import Store
from state.journal import DONE_STATUSES, FAILED
from state.plans import PlanInfo
from tasks.aws import AwsSessions
from tasks.handler import ExecutionContext, PollPolicy
from tasks.identity_store import find_instance

log = logging.getLogger(__name__)


# -- checks before anything is changed ----------------------------------------------------------


def _plan_info(store: Store, spec: MigrationSpec, plan_id: int) -> PlanInfo:
    info = store.plans.get_plan(plan_id)
    if info is None or info.migration != spec.name:
        raise ApplyRefused(f"no plan {plan_id} in migration {spec.name!r}")
    return info


def check_runnable(info: PlanInfo, name: str, spec_path: str) -> Plan:
    """The plan, if its content is intact and the change board approved this stage.

    Raises:
        ApplyRefused: unknown stage, changed content, blocking errors, rejected or missing
            approval.
    """
    try:
        registry.stage(name)
    except IamcError as err:
        raise ApplyRefused(str(err)) from None
    plan = Plan.from_content(info.content)
    if plan.content_hash() != info.hash:
        raise ApplyRefused(
            f"plan {info.id} changed since it was computed (stored hash {info.hash[:12]}): "
            "refusing; compute a new plan with 'iamc plan'"
        )
    if plan.blocking_for(name):
        blocking = len(plan.blocking_for(name))
        raise ApplyRefused(f"plan {info.id} has {blocking} blocking error(s): re-plan")
    # A stage approved on its own (delete) is never covered by an approval of "all".
    refusal = unapproved_reason(info, name, spec_path)
    if refusal:
        raise ApplyRefused(refusal)
    return plan


def check_target(spec: MigrationSpec, plan: Plan, plan_id: int) -> None:
    """Refuse a plan made for another target (or another identity account) than the spec's.

    The spec says where the stage's sessions go (an Identity Center instance, or the identity
    account); a plan for the other target would be applied against the wrong one.

    Raises:
        ApplyRefused: the plan's target or central account differs from the spec's.
    """
    planned = plan.settings.get("target", "identity-center")
    central = (plan.settings.get("central") or {}).get("account")
    if planned == spec.target and central == spec.central_account:
        return
    what = f"target {planned}" + (f" (identity account {central})" if central else "")
    now = f"target {spec.target}" + (
        f" (identity account {spec.central_account})" if spec.central_account else ""
    )
    raise ApplyRefused(
        f"plan {plan_id} was made for {what}, but the spec now says {now}: nothing was "
        "changed; plan again for the spec's target, or put the spec back"
    )


def check_wave(spec: MigrationSpec, plan: Plan, plan_id: int) -> None:
    """Refuse a wave's plan once the spec no longer has that wave (or has waves, or none).

    Raises:
        ApplyRefused: the plan's wave and the spec's waves disagree; nothing was changed.
    """
    if plan.is_drift:
        # A drift plan puts back what the migration's plans (of any wave) made: no wave's.
        return
    names = [w.name for w in spec.waves]
    wave = plan.wave_name
    if wave is None and names:
        raise ApplyRefused(
            f"plan {plan_id} covers the whole scope, but migration {spec.name!r} is now planned "
            f"in waves ({', '.join(names)}): re-plan with --wave; nothing was changed"
        )
    if wave is not None and wave not in names:
        raise ApplyRefused(
            f"plan {plan_id} is of wave {wave!r}, which the spec no longer has: re-plan; "
            "nothing was changed"
        )


def check_drift_current(store: Store, info: PlanInfo, plan: Plan, hint: str) -> None:
    """Refuse a drift plan that no longer describes the world it would put back.

    A drift plan restores what its read found missing; a rollback since (of a wave, or of
    another drift plan) removed some of that on purpose, and a newer drift read supersedes
    it. Applying it then would bring back what the rollback removed.

    Raises:
        ApplyRefused: Not the migration's latest drift plan, or another plan's provision
            stage ran (applied or rolled back a step) after the read; nothing was changed.
    """
    if not plan.is_drift:
        return
    assert plan.drift is not None
    again = f"re-run '{hint}' and apply its plan; nothing was changed"
    latest = store.plans.latest_drift_plan_id(info.migration_id)
    if latest is not None and latest != info.id:
        raise ApplyRefused(
            f"plan {info.id} is an older drift plan: drift plan {latest} read the migration "
            f"since; {again}"
        )
    read_at = datetime.fromisoformat(str(plan.drift.get("read_at")))
    read_at = read_at if read_at.tzinfo else read_at.replace(tzinfo=UTC)
    last = store.waves.last_change_by_others(info.migration_id, info.id, "provision")
    if last is None:
        return
    other, at = last
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    if at > read_at:
        raise ApplyRefused(
            f"drift plan {info.id} read AWS at {read_at.isoformat()}, but plan {other}'s "
            f"provision stage changed things since ({at.isoformat(timespec='seconds')}: "
            f"applied or rolled back); {again}"
        )


# -- the run -------------------------------------------------------------------------------------


def prefect_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def stage_context(spec: MigrationSpec, spec_path: str, poll: PollPolicy | None) -> ExecutionContext:
    sessions = AwsSessions.from_spec(spec)
    management = sessions.management()
    # The central-roles target acts in IAM only: no Identity Center instance to find.
    instance = (
        None
        if spec.central_account is not None
        else find_instance(
            management,
            identity_store_id=spec.mapping.identity_store_id,
            instance_arn=spec.mapping.instance_arn,
            spec_path=spec_path,
        )
    )
    if poll is None and spec.aws.first_status_poll_s is not None:
        poll = PollPolicy(first=spec.aws.first_status_poll_s)
    return ExecutionContext(
        management, sessions.for_account, instance, poll=poll, reach=sessions.check_access
    )


def on_action_done(action_id: str, status: str, error: str | None) -> None:
    emit("action-done", action_id=action_id, status=status, error=error)


def apply_plan(
    spec_path: str | Path,
    plan_id: int,
    stage: str = "provision",
    *,
    resume_run_id: int | None = None,
    fault: tuple[str, str] | None = None,
    poll: PollPolicy | None = None,
    in_flow: bool = False,
    clock: Callable[[], datetime] | None = None,
    spread: Callable[..., list[Any]] | None = None,
) -> dict[str, Any]:
    """Apply one stage of an approved plan through the journal (what ``apply_flow`` runs).

    Args:
        spec_path: The migration spec.
        plan_id: The plan.
        stage: ``provision``, ``disable`` or ``delete``.
        resume_run_id: Continue this run (``iamc resume``) instead of starting one.
        fault: Simulate the process dying at ``(action id, point)`` (tests only).
        poll: How to poll asynchronous requests (tests make it quick).
        in_flow: Run per-account work as Prefect tasks (inside ``apply_flow``).
        clock: What "now" is for the bake period (tests move it); default: the real time.
        spread: On a work pool, what sends the accounts to its workers
            (``engine.apply_batch.spread_accounts``); default: this process's threads.

    Returns:
        The run's summary.

    Raises:
        ApplyRefused: Unapproved, stale, conflicting or unimplemented; nothing was changed.
        ApplyFailed: Some actions failed; the rest is done, and a resume continues.
    """
    spec_path = str(spec_path)
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        info = _plan_info(store, spec, plan_id)
        plan = check_runnable(info, stage, spec_path)
        check_target(spec, plan, plan_id)
        check_wave(spec, plan, plan_id)
        if stage == "provision":
            check_drift_current(store, info, plan, mig.hint("drift"))
        actions = [a for a in plan.actions if a.stage == stage]
        params = {
            "spec": spec_path,
            "plan_id": plan_id,
            "stage": stage,
            "prefect_flow_run_id": prefect_flow_run_id() if in_flow else None,
        }
        definition = registry.stage(stage)
        rt = stage_run(spec, store, info, plan, spec_path, poll, clock)
        # The lease first: a second process is refused at once, before any AWS read, and no
        # other run of this stage can start while the checks below read live AWS.
        with stage_lease(store, plan_id, stage) as lease:
            if resume_run_id is not None:
                check_resumable(store, store.runs.get_run(resume_run_id), spec_path)
            _check_before_run(rt, definition, actions)
            run_id = open_run(store, info.migration_id, APPLY_RUN, params, resume_run_id, spec_path)
            record_lease_run(store, lease, run_id)
            rt.lease_holder = lease.holder
            rt.spread = spread if in_flow else None
            rt.executor = stage_executor(rt, definition, run_id, lease.ensure, fault)
            reports = _run_stage(rt, definition, actions, in_flow)
            return _finish(rt, definition, actions, reports, mig.hint(f"resume {run_id}"))


def stage_run(
    spec: MigrationSpec,
    store: Store,
    info: PlanInfo,
    plan: Plan,
    spec_path: str,
    poll: PollPolicy | None,
    clock: Callable[[], datetime] | None,
) -> StageRun:
    """What one run of the plan's stage shares (in the flow run, or in one of its batches)."""
    rt = StageRun(spec, store, plan, info.id, lambda: stage_context(spec, spec_path, poll))
    rt.migration_id = info.migration_id
    rt.spec_path = spec_path
    rt.clock = clock or utc_now
    return rt


def stage_executor(
    rt: StageRun,
    definition: StageDefinition,
    run_id: int,
    guard: Callable[[], None],
    fault: tuple[str, str] | None = None,
) -> Executor:
    """The executor of the run's stage: each action journaled, each change behind ``guard``."""
    return Executor(
        rt.store.journal,
        definition.handlers(),
        rt.ctx,
        run_id=run_id,
        plan_id=rt.plan_id,
        stage=definition.name,
        fault=fault,
        on_done=on_action_done,
        guard=guard,
    )


def _check_before_run(rt: StageRun, definition: StageDefinition, actions: list[PlanAction]) -> None:
    """The stage's own checks (the delete cap, the plan's targets still live), then the
    read-only preflight; a refusal before any change records no run.

    Raises:
        ApplyRefused: A check refused; nothing was changed.
    """
    preconditions_of(definition.name)  # a stage that declares none can't run
    for check in definition.before_run:
        check(rt, actions)
    problems, rt.account_failures = preflight(rt.store, rt.plan_id, rt.ctx, actions)
    if problems:
        raise ApplyRefused(
            f"plan {rt.plan_id} can't be applied as is; nothing was changed:\n  "
            + "\n  ".join(problems)
        )


def _run_stage(
    rt: StageRun, definition: StageDefinition, actions: list[PlanAction], in_flow: bool
) -> list[Any]:
    """The stage's per-account work; the run is recorded failed if it stops on an error."""
    run_id = rt.executor.run_id
    try:
        emit("apply-start", actions=len(actions), run_id=run_id)
        # Each account's task verifies its assignments when its own work is over.
        # Prefect, botocore and the plan stay out of the collector's passes: a full pass
        # stops every thread, up to 0.65 s in which no sso-admin request goes out.
        with old_objects_frozen():
            return run_accounts(rt, definition, actions, in_flow)
    except ConflictError as err:
        rt.store.runs.finish_run(run_id, "failed", error=str(err))
        raise ApplyRefused(f"run {run_id} stopped: {err}") from err
    except LeaseLost:
        # The run is another process's now (it may have resumed it): not ours to end.
        raise
    except BaseException as err:
        rt.store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
        raise


def _finish(
    rt: StageRun,
    definition: StageDefinition,
    actions: list[PlanAction],
    reports: list[Any],
    resume: str,
) -> dict[str, Any]:
    """Record the run's summary: succeeded, or failed naming what to fix and how to resume.

    Raises:
        ApplyFailed: Some actions failed or are pending; the rest is done.
    """
    store, run_id = rt.store, rt.executor.run_id
    summary = _summary(store, run_id, rt.plan_id, definition.name, actions)
    errors = [e for r in reports for e in r.errors]
    summary["errors"] = errors
    # Accounts that failed as a whole (role not assumable, calls failing): iamc status and
    # the UI's table show them FAILED with the reason, though their actions are pending.
    summary["accounts_failed"] = {r.account_id: r.failure for r in reports if r.failure}
    # Accounts left as they were on purpose (IAM changed since the plan): pending, and why.
    summary["accounts_refused"] = {r.account_id: r.refusal for r in reports if r.refusal}
    if definition.takes_access_away:
        summary["refused_by_plan"] = refused_by_plan(rt.plan)
        summary["refused"] = [r for report in reports for r in report.refused]
    if errors or summary["failed"] or summary["pending"]:
        message = (
            f"run {run_id}: {summary['failed']} failed, {summary['pending']} pending of "
            f"{summary['actions']} actions; fix the cause, then '{resume}':\n  "
            + "\n  ".join(errors or ["(see iamc status)"])
        )
        store.runs.finish_run(run_id, "failed", summary=summary, error=message)
        raise ApplyFailed(message)
    store.runs.finish_run(run_id, "succeeded", summary=summary)
    return summary


def record_lease_run(store: Store, lease: StageLease, run_id: int) -> None:
    """Say which run holds each lease of the group (shown to anyone refused)."""
    for each in lease.stages:
        store.leases.stage_lock_run(lease.plan_id, each, lease.holder, run_id)


def _summary(
    store: Store, run_id: int, plan_id: int, stage: str, actions: list[PlanAction]
) -> dict[str, Any]:
    entries = {e.action_id: e for e in store.journal.journal_entries(plan_id, stage)}
    counts = {"succeeded": 0, "adopted": 0, "failed": 0, "pending": 0}
    for action in actions:
        entry = entries.get(action.id)
        status = entry.status if entry else "pending"
        if status == FAILED:
            counts["failed"] += 1
        elif status in DONE_STATUSES:
            counts[status] += 1
        else:
            counts["pending"] += 1
    return {"run_id": run_id, "plan_id": plan_id, "stage": stage, "actions": len(actions), **counts}
