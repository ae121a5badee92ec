"""The whole runbook as one flow: continue a migration at its first unfinished step, wave by wave.

``centralize`` runs, for each wave of the spec in order (or the one it is given): inventory →
mapping → key scan → workloads → usage → plan → the change board's approval of provision
(this run pauses with the approval form) → provision → verify → notify → approval of
disable → disable → the bake period (this run pauses until ``bake-watch`` or an operator
resumes it and every disabled user is ready) → approval of delete → delete → inventory → the
CIS 1.21 verdict. The stage
steps come from the stage registry (``engine.runbook``); each runs as a subflow with its own
run page and table, through ``engine.apply`` (approval, live checks, leases): nothing here
is a shortcut.

What is finished comes from the state DB (``engine.runbook.step_done``), never from Prefect: a
Retry of a failed or crashed run, or a new run, skips every step the store records as
finished and continues at the first that is not; a failed apply is resumed under its own run
id. After every step the migration status artifact (``console.migration_status``) gets a new
version on this run. The run ends Completed with a message saying what is done and left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from console.approval import request_approval
from console.bake_pause import pause_for_bake
from console.migration_status import end_message, migration_status, publish_status
from console.operator import deployment_name, operator_step, run_logger
from console.run_names import step_run_name
from domain import stages as registry
from domain.errors import ApplyRefused, PlanError
from domain.retire import BakeState
from engine.migration import Migration
from engine.prefect_runtime import end_what_a_dead_attempt_left
from engine.progress import MigrationProgress, migration_progress
from engine.runbook import approval_stage, is_stage, step_done, step_names, verdict_line
from engine.wave_progress import ROLLED_BACK, WaveProgress, wave_names, waves_progress
from flows.apply import apply_flow
from flows.bake import bake_watch_flow
from flows.inventory import inventory_flow
from flows.key_scan import key_scan_flow
from flows.mapping import mapping_flow
from flows.notify import notify_flow
from flows.plan import plan_flow
from flows.usage import usage_flow
from flows.verify import verify_flow
from flows.workloads import workloads_flow

# Runs one step: (the open migration, where it stands, its wave, the run's options).
Run = Callable[[Migration, MigrationProgress, WaveProgress, dict[str, Any]], Any]
# An approval asked this many times without a decision on its stage ends the run.
MAX_ASKS = 3


def _inventory(mig: Migration, m: MigrationProgress, w: WaveProgress, o: dict[str, Any]) -> Any:
    runner = ThreadPoolTaskRunner(max_workers=mig.spec.inventory.concurrency)
    return inventory_flow.with_options(task_runner=runner)(mig.spec_path)


def _key_scan(mig: Migration, m: MigrationProgress, w: WaveProgress, o: dict[str, Any]) -> Any:
    runner = ThreadPoolTaskRunner(max_workers=mig.spec.scan.concurrency)
    return key_scan_flow.with_options(task_runner=runner)(mig.spec_path)


def _approve(mig: Migration, w: WaveProgress, stage: str, options: dict[str, Any]) -> Any:
    """Pause for the change board's form on ``stage`` of the wave's plan; refuse a rejection."""
    from prefect.exceptions import FlowPauseTimeout

    assert w.plan_id is not None
    publish_status(mig, paused=(w.wave, f"approve {stage}"))
    timeout = options["approval_timeout_seconds"]
    try:
        meta = request_approval(mig.spec_path, w.plan_id, timeout, stage=stage, ask_again=False)
    except FlowPauseTimeout:
        raise PlanError(
            f"no decision on stage {stage} of plan {w.plan_id} within {timeout} s: start "
            f"'{deployment_name('centralize', mig.spec.name)}' again; it asks again"
        ) from None
    authorising = registry.authorised_by(stage)
    decided = [a for a in meta["approvals"] if a["stage"] in (*authorising, registry.ALL)]
    if decided and decided[-1]["decision"] != "approved":
        a = decided[-1]
        raise PlanError(
            f"plan {w.plan_id} stage {a['stage']} was {a['decision']} by {a['approver']} "
            f"(ticket {a['ticket']}): nothing more is applied. Address the board's comment "
            f"({a['comment'] or 'none'}), then make a new plan: run the deployment "
            f"'{deployment_name('plan', mig.spec.name)}'"
            + (f" with wave {w.wave}" if w.wave else "")
            + f" (iamc plan -c {mig.spec_path}) and start this run again"
        )
    return meta


def _apply(mig: Migration, w: WaveProgress, stage: str) -> Any:
    """Apply the stage through the engine; continue its failed or interrupted run."""
    state = w.stage(stage)
    if state.status == ROLLED_BACK:
        raise ApplyRefused(
            f"stage {stage} of plan {w.plan_id} was rolled back after apply run "
            f"{state.run_id}: centralize does not apply it again by itself. Apply it again "
            f"with '{deployment_name('apply', mig.spec.name)}' (plan_id {w.plan_id}, stage "
            f"{stage}) or make a new plan, then start this run again"
        )
    if state.resumable:
        run_logger().info(
            "%s: continuing apply run %s (%s) where it stopped", stage, state.run_id, state.status
        )
        return apply_flow(mig.spec_path, w.plan_id, stage, state.run_id)
    return apply_flow(mig.spec_path, w.plan_id, stage)


def _bake(mig: Migration, m: MigrationProgress, w: WaveProgress, options: dict[str, Any]) -> Any:
    """Watch the wave's disabled users; pause until every one is ready, looking again on
    every resume. Nobody is deleted while a user is baking or in use."""
    from prefect.exceptions import FlowPauseTimeout

    assert w.plan_id is not None
    logger = run_logger()
    held_states = (BakeState.BAKING, BakeState.IN_USE)
    while True:
        report = bake_watch_flow(mig.spec_path, w.plan_id, resume_paused=False)
        held = [u for u in report["users"] if u["state"] in held_states]
        if not held:
            logger.info("bake: every user plan %s disabled is ready", w.plan_id)
            return report
        for user in held:
            logger.info("bake: %s %s: %s", user["user"], user["state"], user["reason"])
        logger.info(
            "bake: %d user(s) not ready: this run pauses; the daily '%s' resumes it once they "
            "are, or press Resume to look again",
            len(held),
            deployment_name("bake-watch", mig.spec.name),
        )
        publish_status(mig, paused=(w.wave, "bake"))
        timeout = options["bake_timeout_seconds"]
        try:
            pause_for_bake(mig.spec.name, w.plan_id, timeout)
        except FlowPauseTimeout:
            raise ApplyRefused(
                f"the bake period of plan {w.plan_id} did not end within {timeout} s: "
                f"{len(held)} user(s) still baking or in use (the bake table says who); "
                "decide (iamc bake decide) or re-enable them, then start this run again"
            ) from None


def _verdict(mig: Migration, m: MigrationProgress, w: WaveProgress, o: dict[str, Any]) -> Any:
    logger = run_logger()
    for account, cis in sorted(w.cis.items()):
        logger.info("%s %s: CIS 1.21 %s %s", account, cis["name"], cis["verdict"], cis["why"])
    logger.info("%s: %s", w.label, verdict_line(w))
    return w.cis


RUNS: dict[str, Run] = {
    "inventory": _inventory,
    "mapping": lambda mig, m, w, o: mapping_flow(mig.spec_path),
    "key-scan": _key_scan,
    "workloads": lambda mig, m, w, o: workloads_flow(mig.spec_path),
    "usage": lambda mig, m, w, o: usage_flow(mig.spec_path),
    "plan": lambda mig, m, w, o: plan_flow(mig.spec_path, wave=w.wave),
    "verify": lambda mig, m, w, o: verify_flow(mig.spec_path, w.plan_id),
    "notify": lambda mig, m, w, o: notify_flow(mig.spec_path, w.plan_id),
    "bake": _bake,
    "final inventory": _inventory,
    "verdict": _verdict,
}


def run_of(step: str) -> Run:
    """What runs a step: its own, an approval's pause, or the stage's apply."""
    stage = approval_stage(step)
    if stage is not None:
        return lambda mig, m, w, o: _approve(mig, w, stage, o)
    if is_stage(step):
        return lambda mig, m, w, o: _apply(mig, w, step)
    return RUNS[step]


def where(mig: Migration, wave: str | None) -> tuple[MigrationProgress, WaveProgress]:
    """Where the migration and the wave stand now, as the state DB records it."""
    m = migration_progress(mig)
    return m, next(w for w in waves_progress(mig, m) if w.wave == wave)


def run_wave(mig: Migration, wave: str | None, options: dict[str, Any], outcome: dict) -> None:
    """Run the wave's steps from its first unfinished one."""
    logger = run_logger()
    label = wave or "(scope)"
    for number, step in enumerate(step_names(), start=1):
        asked = 0
        while True:
            m, w = where(mig, wave)
            why = step_done(step, m, w, mig.spec)
            if why is not None:
                if asked == 0:
                    logger.info("%s · step %d %s: already done (%s)", label, number, step, why)
                    outcome["already_done"].append(f"{label}: {step}")
                break
            if asked and approval_stage(step) is None:
                break  # it ran; a step that is re-checked each time (bake, verdict) goes on
            if asked >= MAX_ASKS:
                raise PlanError(
                    f"{label}: asked {asked} times for a decision on stage "
                    f"{approval_stage(step)} and got decisions on other stages only"
                )
            logger.info("%s · step %d %s: starting", label, number, step)
            try:
                run_of(step)(mig, m, w, options)
            except Exception:
                logger.error(
                    "%s · step %d %s did not finish: see this run's message", label, number, step
                )
                publish_status(mig)
                raise
            asked += 1
            logger.info("%s · step %d %s: finished", label, number, step)
            outcome["ran"].append(f"{label}: {step}")
            publish_status(mig)


@flow(
    name="centralize",
    flow_run_name=step_run_name("centralize"),
    log_prints=False,
    persist_result=False,
)
@operator_step("centralize")
def centralize_flow(
    spec_path: str,
    wave: str | None = None,
    approval_timeout_seconds: int = 7 * 24 * 3600,
    bake_timeout_seconds: int = 60 * 24 * 3600,
) -> Any:
    """Run the migration's runbook from its first unfinished step, wave by wave.

    Args:
        spec_path: The migration spec (TOML).
        wave: The wave to run; empty: every wave of the spec, in order.
        approval_timeout_seconds: How long the run waits, paused, for the change board.
        bake_timeout_seconds: How long the run waits, paused, for the bake period to end.

    Returns:
        A Completed state whose message says what is done and what is left; its data holds
        the steps that were already done and those that ran.
    """
    from prefect.states import Completed

    options = {
        "approval_timeout_seconds": approval_timeout_seconds,
        "bake_timeout_seconds": bake_timeout_seconds,
    }
    outcome: dict[str, Any] = {"already_done": [], "ran": []}
    # A Retry after the worker died: what the dead attempt left Running must not be rerun.
    end_what_a_dead_attempt_left()
    with Migration.open(spec_path) as mig:
        if wave is not None:
            mig.spec.wave(wave)  # an unknown wave is refused before anything runs
        chosen = [wave] if wave is not None else wave_names(mig)
        publish_status(mig)
        for name in chosen:
            run_wave(mig, name, options, outcome)
        _, waves = migration_status(mig)
        message = end_message(mig.spec.name, waves, chosen)
    run_logger().info("%s", message)
    return Completed(message=message, data={**outcome, "message": message})
