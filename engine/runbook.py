"""The runbook's steps for one wave, and which of them are finished, as the state store says.

``centralize`` runs a wave's steps in this order and continues at the first unfinished one;
the migration status artifact shows the same list. The stage steps come from the stage
registry (``domain.stages``): each stage is approved, then applied; an approval of ``all``
covers the stages approved with it, delete is approved on its own. Verify follows
provision, notify (people's messages, owners' hand-off) follows replace, the bake period comes
before delete's approval, and a wave ends with an inventory
after its delete and the CIS 1.21 verdict of its accounts. Read-only: no AWS, no Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import stages as registry
from domain.cis import PASSING
from domain.inventory_report import CIS_FAIL
from domain.spec import MigrationSpec
from engine.progress import MigrationProgress
from engine.wave_progress import ROLLED_BACK, WaveProgress, waiting_to_bake

SHARED = ("inventory", "mapping", "key-scan", "workloads", "usage", "plan")
BEFORE_APPROVAL = {"delete": ("bake",)}
# Notify after replace: the owners' hand-off names roles that exist by then (a wave with no
# workload to replace has nothing to wait for).
AFTER_STAGE = {"provision": ("verify",), "replace": ("notify",)}
FINAL = ("final inventory", "verdict")
APPROVE = "approve "

DONE, FAILED, NEXT, PENDING = "done", "failed", "next", "pending"


def step_names() -> list[str]:
    """A wave's steps in runbook order."""
    names = list(SHARED)
    for definition in registry.stages():
        names += BEFORE_APPROVAL.get(definition.name, ())
        names += [APPROVE + definition.name, definition.name]
        names += AFTER_STAGE.get(definition.name, ())
    return names + list(FINAL)


def approval_stage(step: str) -> str | None:
    """The stage an approval step decides on (``approve disable`` -> ``disable``), else None."""
    return step[len(APPROVE) :] if step.startswith(APPROVE) else None


def is_stage(step: str) -> bool:
    return step in registry.stage_names()


@dataclass(frozen=True)
class StepView:
    """One step of a wave as an operator reads it."""

    number: int
    name: str
    state: str  # done | failed | next | pending
    detail: str = ""
    run_id: int | None = None


def scan_needed(spec: MigrationSpec) -> bool:
    return bool(spec.scan.paths) or spec.scan.aws


def step_done(step: str, m: MigrationProgress, w: WaveProgress, spec: MigrationSpec) -> str | None:
    """Why ``step`` of wave ``w`` counts as finished, or None when it must (still) run."""
    if step in SHARED[:-1] and w.plan_current:
        return f"plan {w.plan_id} of this wave is already made"
    if step == "inventory":
        return f"snapshot {m.snapshot_id}, run {m.inventory_run_id}" if m.inventory_done else None
    if step == "mapping":
        return f"run {m.mapping_run_id} of snapshot {m.snapshot_id}" if m.mapping_done else None
    if step == "key-scan":
        if not scan_needed(spec):
            return "nothing to scan ([scan] names no paths and aws = false)"
        return f"run {m.key_scan_run_id}" if m.key_scan_run_id and m.inventory_done else None
    if step == "workloads":
        # After the key scan: where a key is written down is evidence of where it runs.
        done = m.workloads_run_id and m.inventory_done
        return f"run {m.workloads_run_id}" if done else None
    if step == "usage":
        # What each user used in the window, for the plan's least-privilege section.
        done = m.usage_run_id and m.inventory_done
        return f"run {m.usage_run_id}" if done else None
    if step == "plan":
        if w.plan_current:
            return f"plan {w.plan_id}, hash {(w.plan_hash or '')[:12]}"
        return None
    if not w.plan_current or w.plan_id is None:
        return None
    stage = approval_stage(step)
    if stage is not None:
        return _approval_done(w, stage)
    if is_stage(step):
        state = w.stage(step)
        if state.actions == 0:
            return f"plan {w.plan_id} has nothing to {step}"
        return f"apply run {state.run_id} succeeded" if state.done else None
    return _other_done(step, w)


def _approval_done(w: WaveProgress, stage: str) -> str | None:
    state = w.stage(stage)
    if state.actions == 0:
        return f"plan {w.plan_id} has nothing to {stage}"
    if state.done:
        return f"applied by run {state.run_id}"
    if state.approved:
        a = state.approval or {}
        return f"stage {a['stage']} approved by {a['approver']} (ticket {a['ticket']})"
    return None


def _other_done(step: str, w: WaveProgress) -> str | None:
    provisioned = w.stage("provision").done or w.stage("provision").actions == 0
    if step == "verify":
        return f"verify run {w.verify_run_id}" if w.verify_run_id and provisioned else None
    if step == "notify":
        return f"notify run {w.notify_run_id}" if w.notify_run_id and provisioned else None
    delete = w.stage("delete")
    if step == "bake":
        if delete.actions == 0:
            return f"plan {w.plan_id} deletes no one"
        if delete.done:
            return f"delete run {delete.run_id} succeeded"
        if w.bake_run_id and w.bake_counts and not waiting_to_bake(w.bake_counts):
            # The delete stage looks for use again, user by user, before it deletes anyone.
            return f"every disabled user is ready (bake watch run {w.bake_run_id})"
        return None
    if step == "final inventory":
        if w.final_inventory_run_id:
            return f"inventory run {w.final_inventory_run_id}, after the wave's last stage run"
        return None
    if step == "verdict":
        return verdict_line(w) if w.final_inventory_run_id else None
    return None


def verdict_line(w: WaveProgress) -> str:
    """``CIS 1.21: 2 of 3 account(s) pass; 1 fail (…)`` for the wave's accounts."""
    verdicts = [c["verdict"] for c in w.cis.values()]
    failing = [f"{a} {c['why']}" for a, c in sorted(w.cis.items()) if c["verdict"] == CIS_FAIL]
    passing = sum(1 for v in verdicts if v in PASSING)
    line = f"CIS 1.21: {passing} of {len(verdicts)} account(s) pass"
    if failing:
        line += f"; {len(failing)} fail ({'; '.join(failing)})"
    unknown = len(verdicts) - passing - len(failing)
    if unknown:
        line += f"; {unknown} not read"
    return line


def step_failed(step: str, w: WaveProgress) -> tuple[str, int | None] | None:
    """(why, run id) when the step's latest run failed and is not finished since."""
    if is_stage(step) and w.plan_current:
        state = w.stage(step)
        if state.resumable:
            return f"apply run {state.run_id} {state.status}", state.run_id
        if state.status == ROLLED_BACK:
            return f"rolled back after apply run {state.run_id}", state.run_id
        failing = [a for a, s in state.accounts.items() if s.status == "failed"]
        if failing and not state.done:
            return f"failed in {', '.join(sorted(failing))}", state.run_id
    if step == "verify" and w.verify_failed_run_id and not w.verify_run_id:
        return f"verify run {w.verify_failed_run_id} found problems", w.verify_failed_run_id
    stage = approval_stage(step)
    if stage is not None and w.plan_current:
        a = w.stage(stage).approval
        if a is not None and a["decision"] == "rejected":
            return f"rejected by {a['approver']} (ticket {a['ticket']}): make a new plan", None
    return None


def wave_steps(m: MigrationProgress, w: WaveProgress, spec: MigrationSpec) -> list[StepView]:
    """Every step of the wave: done, failed, the next one, and what is pending after it."""
    views: list[StepView] = []
    seen_next = False
    for number, name in enumerate(step_names(), start=1):
        why = step_done(name, m, w, spec)
        if why is not None and name != "bake":
            views.append(StepView(number, name, DONE, why, _run_of(name, m, w)))
            continue
        if name == "bake" and why is not None:
            views.append(StepView(number, name, DONE, why))
            continue
        failed = step_failed(name, w)
        if failed is not None:
            views.append(StepView(number, name, FAILED, failed[0], failed[1]))
            seen_next = True
            continue
        detail = bake_detail(w) if name == "bake" else ""
        views.append(StepView(number, name, PENDING if seen_next else NEXT, detail))
        seen_next = True
    return views


def bake_detail(w: WaveProgress) -> str:
    if not w.bake_counts:
        return ""
    held = waiting_to_bake(w.bake_counts)
    counts = ", ".join(f"{n} {state}" for state, n in w.bake_counts.items())
    return f"{counts}" + (f"; {held} not ready" if held else "; all ready")


def _run_of(step: str, m: MigrationProgress, w: WaveProgress) -> int | None:
    if is_stage(step):
        return w.stage(step).run_id
    return {
        "inventory": m.inventory_run_id if not w.plan_current else None,
        "mapping": m.mapping_run_id if not w.plan_current else None,
        "key-scan": m.key_scan_run_id if not w.plan_current else None,
        "workloads": m.workloads_run_id if not w.plan_current else None,
        "usage": m.usage_run_id if not w.plan_current else None,
        "verify": w.verify_run_id,
        "notify": w.notify_run_id,
        "final inventory": w.final_inventory_run_id,
    }.get(step)


def wave_finished(m: MigrationProgress, w: WaveProgress, spec: MigrationSpec) -> bool:
    return all(step_done(name, m, w, spec) is not None for name in step_names())
