"""The whole runbook as one flow: continue a migration at its first unfinished step.

``centralize`` runs, for the spec's migration: inventory → mapping → (key scan) → plan →
the change board's approval (this run pauses with the approval form) → provision → verify →
notify → (approval of disable → disable → bake → approval of delete → delete). Each step but
the approval is a subflow with its own run page and result artifact.

What is finished comes from the state DB (``engine.progress.migration_progress``), not from
Prefect: a Retry of a failed or crashed ``centralize`` run, or a new run, skips every step the
store records as finished and continues at the first that is not, so inventory, mapping and
plan are never repeated once done, and a failed apply is resumed under its own run id.

Steps other engineers are adding hook in through :data:`STEPS` (see :func:`not_built`): a step
whose ``run`` is None is skipped when it is ``optional`` (key scan) and otherwise ends the run
there, Completed, saying what is left to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from console.approval import request_approval
from console.operator import deployment_name, operator_step, run_logger
from domain.errors import PlanError
from domain.runs import RUN_FAILED, RUN_INTERRUPTED
from engine.migration import Migration
from engine.progress import MigrationProgress, migration_progress
from flows.apply import apply_flow
from flows.inventory import inventory_flow
from flows.mapping import mapping_flow
from flows.notify import notify_flow
from flows.plan import plan_flow
from flows.verify import verify_flow

# Why a step counts as finished ("snapshot 3, run 12"), or None when it must run.
Done = Callable[[MigrationProgress], str | None]
# Runs the step: (spec path, where the migration stands, the flow's options).
Run = Callable[[str, MigrationProgress, dict[str, Any]], Any]


@dataclass(frozen=True)
class Step:
    """One runbook step of ``centralize``.

    Attributes:
        name: As operators call it (the step's deployment has the same name).
        done: Why it is finished, read from the state DB; None when it must run.
        run: What runs it; None for a step not built in this version (a hook).
        optional: A missing (``run is None``) optional step is skipped; any other ends the run.
    """

    name: str
    done: Done
    run: Run | None = None
    optional: bool = False


def not_built(name: str, *, optional: bool = False) -> Step:
    """A hook for a step another change adds: replace it in :data:`STEPS` with a real Step.

    For example, once ``flows/key_scan.py`` exists: ``Step("key-scan", key_scan_done,
    run_key_scan)``, where ``key_scan_done`` reads the store (``state.progress``) and
    ``run_key_scan`` calls the step's flow as a subflow.
    """
    return Step(name, lambda _: None, None, optional)


# -- the steps built so far ------------------------------------------------------------------


def _inventory_done(p: MigrationProgress) -> str | None:
    return f"snapshot {p.snapshot_id}, run {p.inventory_run_id}" if p.inventory_done else None


def _run_inventory(spec_path: str, p: MigrationProgress, options: dict[str, Any]) -> Any:
    runner = ThreadPoolTaskRunner(max_workers=Migration.spec_of(spec_path).inventory.concurrency)
    return inventory_flow.with_options(task_runner=runner)(spec_path)


def _mapping_done(p: MigrationProgress) -> str | None:
    return f"run {p.mapping_run_id} of snapshot {p.snapshot_id}" if p.mapping_done else None


def _plan_done(p: MigrationProgress) -> str | None:
    return f"plan {p.plan_id}, hash {(p.plan_hash or '')[:12]}" if p.plan_done else None


def _approval_done(p: MigrationProgress) -> str | None:
    if p.plan_done and p.approval and p.approval["decision"] == "approved":
        a = p.approval
        return f"plan {p.plan_id} {a['decision']} by {a['approver']} (ticket {a['ticket']})"
    return None


def _run_approval(spec_path: str, p: MigrationProgress, options: dict[str, Any]) -> Any:
    assert p.plan_id is not None
    meta = request_approval(
        spec_path,
        p.plan_id,
        options["approval_timeout_seconds"],
        stage="provision",
        ask_again=False,
    )
    bound = [
        a
        for a in meta["approvals"]
        if a["stage"] in ("provision", "all") and a.get("decision") != "approved"
    ]
    if bound:
        a = bound[-1]
        migration = Migration.spec_of(spec_path).name
        raise PlanError(
            f"plan {p.plan_id} stage {a['stage']} was {a['decision']} by {a['approver']} "
            f"(ticket {a['ticket']}): nothing will be applied. Address the board's comment "
            f"({a['comment'] or 'none'}), then make a new plan: run the deployment "
            f"'{deployment_name('plan', migration)}' (iamc plan -c {spec_path}) and start "
            "this run again"
        )
    return meta


def _provision_done(p: MigrationProgress) -> str | None:
    return f"apply run {p.apply_run_id} succeeded" if p.provision_done else None


def _run_provision(spec_path: str, p: MigrationProgress, options: dict[str, Any]) -> Any:
    if p.apply_run_id is not None and p.apply_status in (RUN_FAILED, RUN_INTERRUPTED):
        run_logger().info(
            "provision: continuing apply run %s (%s) where it stopped",
            p.apply_run_id,
            p.apply_status,
        )
        return apply_flow(spec_path, p.plan_id, "provision", p.apply_run_id)
    return apply_flow(spec_path, p.plan_id, "provision")


def _verify_done(p: MigrationProgress) -> str | None:
    return f"verify run {p.verify_run_id}" if p.verify_run_id and p.provision_done else None


def _notify_done(p: MigrationProgress) -> str | None:
    return f"notify run {p.notify_run_id}" if p.notify_run_id and p.provision_done else None


STEPS: tuple[Step, ...] = (
    Step("inventory", _inventory_done, _run_inventory),
    Step("mapping", _mapping_done, lambda spec, p, o: mapping_flow(spec)),
    not_built("key-scan", optional=True),  # hook: flows/key_scan.py
    Step("plan", _plan_done, lambda spec, p, o: plan_flow(spec)),
    Step("approve provision", _approval_done, _run_approval),
    Step("provision", _provision_done, _run_provision),
    Step("verify", _verify_done, lambda spec, p, o: verify_flow(spec, p.plan_id)),
    Step("notify", _notify_done, lambda spec, p, o: notify_flow(spec, p.plan_id)),
    not_built("approve disable"),  # hook: a pause like "approve provision", stage disable
    not_built("disable"),  # hook: apply_flow(spec, plan_id, "disable") once it is enabled
    not_built("bake"),  # hook: flows/bake.py, suspended until bake_days pass and it is clean
    not_built("approve delete"),  # hook: a pause like "approve provision", stage delete
    not_built("delete"),  # hook: apply_flow(spec, plan_id, "delete") once it is enabled
)


@flow(name="centralize", log_prints=False, persist_result=False)
@operator_step("centralize")
def centralize_flow(
    spec_path: str, approval_timeout_seconds: int = 7 * 24 * 3600
) -> dict[str, Any]:
    """Run the migration's runbook from its first unfinished step.

    Args:
        spec_path: The migration spec (TOML).
        approval_timeout_seconds: How long the run waits, paused, for the change board.

    Returns:
        The steps: which were already done, which ran, and which are left.
    """
    logger = run_logger()
    options = {"approval_timeout_seconds": approval_timeout_seconds}
    outcome: dict[str, Any] = {"already_done": [], "ran": [], "left": []}
    # Opened once for the run: each step is its own flow and opens the migration itself.
    with Migration.open(spec_path) as mig:
        for number, step in enumerate(STEPS, start=1):
            progress = migration_progress(mig)
            why = step.done(progress)
            if why:
                logger.info("step %d %s: already done (%s): not repeated", number, step.name, why)
                outcome["already_done"].append(step.name)
                continue
            if step.run is None:
                if step.optional:
                    logger.info("step %d %s: not built in this version: skipped", number, step.name)
                    continue
                outcome["left"] = [s.name for s in STEPS[number - 1 :] if not s.optional]
                logger.info(
                    "step %d %s: not built in this version: the run ends here; left to do: %s",
                    number,
                    step.name,
                    ", ".join(outcome["left"]),
                )
                break
            logger.info("step %d %s: starting", number, step.name)
            try:
                step.run(spec_path, progress, options)
            except Exception:
                logger.error(
                    "step %d %s did not finish: see the message of this run", number, step.name
                )
                raise
            logger.info("step %d %s: finished", number, step.name)
            outcome["ran"].append(step.name)
        final = migration_progress(mig)
    outcome.update(
        {
            "migration": final.migration,
            "plan_id": final.plan_id,
            "apply_run_id": final.apply_run_id,
            "verify_run_id": final.verify_run_id,
            "notify_run_id": final.notify_run_id,
        }
    )
    return outcome
