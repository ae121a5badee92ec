"""Runbook steps 3, 5 and 7 as flows: apply an approved plan stage, roll it back, resume a run.

Every stage runs through the engine (``engine.apply``) and its executor, which journals each
step before and after the AWS call; re-running ``apply_flow`` on the same plan and stage (a
Prefect Retry, ``iamc resume``) skips what is done and reconciles what was cut off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from console.artifacts import publish_apply, publish_rollback
from console.operator import ProgressEvents, operator_step, resolve_plan_id
from console.run_names import step_run_name
from console.waves import publish_waves_artifact
from domain.errors import ApplyRefused
from domain.plan import Stage
from domain.runs import APPLY_RUN, ROLLBACK_RUN, RunInfo
from engine.apply import apply_plan
from engine.apply_batch import spread_accounts
from engine.batches import distributed
from engine.migration import Migration
from engine.rollback import rollback_plan
from engine.runs import check_resumable
from engine.stage_run import ACCOUNT_CONCURRENCY


@flow(
    name="apply",
    flow_run_name=step_run_name("apply"),
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=ACCOUNT_CONCURRENCY),
)
@operator_step(
    "apply",
    progress=ProgressEvents("apply-start", "actions", "action-done", "actions"),
    publish=publish_apply,
)
def apply_flow(
    spec_path: str,
    plan_id: int | None = None,
    stage: Stage = Stage.PROVISION,
    resume_run_id: int | None = None,
) -> dict[str, Any]:
    """Apply one stage of an approved plan: permission sets, then each account's provisioning
    and assignments as one task per account. Safe to re-run from the top (Prefect Retry):
    the journal of (plan, stage) says what is done.

    Args:
        spec_path: The migration spec (TOML).
        plan_id: The approved plan; empty: the migration's latest plan.
        stage: Which stage of the plan to carry out: ``provision``, ``disable`` or ``delete``
            (see ``stages/``).
        resume_run_id: Continue this apply run instead of starting one (``iamc resume``).

    Returns:
        The run's summary: counts of succeeded, adopted, failed and pending actions.
    """
    plan_id = resolve_plan_id(spec_path, plan_id)
    try:
        return apply_plan(
            spec_path,
            plan_id,
            str(stage),
            resume_run_id=resume_run_id,
            in_flow=True,
            # On a work pool the accounts go out as batch runs any of its workers picks up.
            spread=spread_accounts if distributed() else None,
        )
    finally:
        publish_waves_artifact(spec_path)


@flow(
    name="rollback",
    flow_run_name=step_run_name("rollback"),
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=ACCOUNT_CONCURRENCY),
)
@operator_step("rollback", publish=publish_rollback)
def rollback_flow(
    spec_path: str,
    run_id: int,
    dry_run: bool = False,
    resume_run_id: int | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Undo what an apply run did, one task per account as the apply ran them: every
    account's assignments before the permission sets they use; for a disable run,
    credentials back to their prior status, then the quarantine lifted.

    Args:
        spec_path: The migration spec (TOML).
        run_id: The apply run to roll back.
        dry_run: Only list what would be undone and what is left alone.
        resume_run_id: Continue this rollback run instead of starting one.
        user: ``ACCOUNT/NAME``: only this IAM user (bring one person back).
    """
    return rollback_plan(
        spec_path,
        run_id,
        dry_run,
        resume_run_id=resume_run_id,
        user=user,
        in_flow=True,
    )


def refuse_unresumable(spec_path: str | Path, run_id: int) -> RunInfo:
    """The run to resume, unless it may not act (superseded, finished, still running, not an
    apply or rollback run of this migration): refused before a flow run or a display starts,
    and again under the stage lease.

    Raises:
        ApplyRefused: It may not resume; nothing was changed.
    """
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        run = store.runs.get_run(run_id)
        if run.kind == "restore":  # journaled too, but not a plan stage's run
            return run
        if run.migration != spec.name or run.kind not in (APPLY_RUN, ROLLBACK_RUN):
            raise ApplyRefused(f"run {run_id} is not an apply or rollback run of {spec.name!r}")
        check_resumable(store, run, spec_path)
        return run


def resume(spec_path: str | Path, run_id: int) -> dict[str, Any]:
    """Continue an apply or rollback run where it stopped, under the same run id."""
    run = refuse_unresumable(spec_path, run_id)
    if run.kind == "restore":
        from flows.restore import resume_restore

        return resume_restore(spec_path, run_id)
    if run.kind == APPLY_RUN:
        return apply_flow(
            str(spec_path), int(run.params["plan_id"]), str(run.params["stage"]), run_id
        )
    return rollback_flow(
        str(spec_path), int(run.params["of_run"]), False, run_id, run.params.get("user")
    )
