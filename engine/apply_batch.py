"""A plan stage's accounts on a work pool: sent out in batches, and one batch's run.

The parent flow run (``engine.apply.apply_plan`` on a worker) takes the lease, runs the
stage's checks, the preflight and its management work, then sends the accounts out
(:func:`spread_accounts`); each batch run (``flows.account_batch``) re-checks the plan,
re-proves every user's live preconditions and runs its accounts through the same executor
and journal, under the parent's lease (:func:`engine.lease.borrowed_lease`). The accounts'
reports come back through the state DB; the parent finishes the run as it does with threads.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from domain import stages as registry
from domain.plan import PlanAction
from domain.stages import StageDefinition
from engine.account_work import failed_account, run_accounts, unfinished
from engine.apply import (
    _plan_info,
    check_runnable,
    check_target,
    check_wave,
    on_action_done,
    stage_executor,
    stage_run,
)
from engine.batches import batch_label, dispatch
from engine.lease import borrowed_lease
from engine.migration import Migration
from engine.stage_run import AccountReport, StageRun
from state.journal import DONE_STATUSES, FAILED

BATCH_STEP = "apply"
# An action's statuses that end it (the progress a local run's executor reports as it goes).
ENDED = DONE_STATUSES | {FAILED}


def work_key(run_id: int, stage: str) -> str:
    """Where a run's batches record their accounts' reports."""
    return f"apply:{run_id}:{stage}"


def spread_accounts(
    rt: StageRun, definition: StageDefinition, accounts: list[tuple[str, list[PlanAction]]]
) -> list[AccountReport]:
    """Send the stage's accounts to the pool's workers; their reports, in account order.

    An account whose work the journal shows finished is not sent again (a Retry of the
    parent re-runs only the accounts not finished); one whose batch never reported is
    failed with why and what to do.
    """
    assert rt.executor is not None
    run_id, stage = rt.executor.run_id, definition.name
    finished = {
        a: _from_journal(rt, a, actions) for a, actions in accounts if not unfinished(rt, actions)
    }
    # What an earlier attempt finished counts in this run's progress, as a local run's does.
    _batch_progress({a: asdict(report) for a, report in finished.items()})
    todo = [a for a, _ in accounts if a not in finished]
    params = {
        "spec_path": rt.spec_path,
        "plan_id": rt.plan_id,
        "stage": stage,
        "run_id": run_id,
        "holder": rt.lease_holder,
        "account_failures": {a: r for a, r in rt.account_failures.items() if a in todo},
    }
    results, missing = dispatch(
        rt.spec,
        rt.store,
        work=work_key(run_id, stage),
        step=BATCH_STEP,
        params=params,
        accounts=todo,
        label=lambda batch: batch_label(stage, batch),
        here=lambda batch: run_batch(rt.spec_path, params, batch, None),
        on_batch_done=_batch_progress,
    )
    reports = []
    for account_id, actions in accounts:
        if account_id in finished:
            reports.append(finished[account_id])
        elif account_id in results:
            reports.append(AccountReport(**results[account_id]))
        else:
            why = missing.get(account_id, "its batch run reported nothing")
            reports.append(failed_account(account_id, why, actions))
    return reports


def _batch_progress(results: dict[str, dict[str, Any]]) -> None:
    """A batch's accounts are done: each action it ended, as its own process reported it."""
    for result in results.values():
        errors = result.get("errors") or []
        for action_id, status in (result.get("statuses") or {}).items():
            if status in ENDED:
                # A failed action's error is its ActionError's text: "<action id>: <why>".
                error = next((e for e in errors if e.startswith(f"{action_id}: ")), None)
                on_action_done(action_id, status, error if status == FAILED else None)


def _from_journal(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    report = AccountReport(account_id)
    for action in actions:
        entry = rt.store.journal.journal_entry(rt.plan_id, action.id)
        report.statuses[action.id] = entry.status if entry else "pending"
    return report


def run_batch(
    spec_path: str, params: dict[str, Any], accounts: list[str], flow_run_id: str | None
) -> dict[str, dict[str, Any]]:
    """One batch run's work (on a worker): its accounts of the parent's stage, reported.

    The plan is checked again (intact, approved, of the spec's wave and target); each change
    is made only while the parent still holds the stage's lease.
    """
    stage, plan_id, run_id = params["stage"], int(params["plan_id"]), int(params["run_id"])
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        info = _plan_info(store, spec, plan_id)
        plan = check_runnable(info, stage, spec_path)
        check_target(spec, plan, plan_id)
        check_wave(spec, plan, plan_id)
        definition = registry.stage(stage)
        rt = stage_run(spec, store, info, plan, spec_path, None, None)
        rt.account_failures = dict(params.get("account_failures") or {})
        guard = borrowed_lease(store, plan_id, stage, params["holder"])
        guard()  # before any AWS call: a batch of a parent that is gone does nothing
        rt.executor = stage_executor(rt, definition, run_id, guard)
        wanted = set(accounts)
        actions = [
            a
            for a in plan.actions
            if a.stage == stage
            and a.kind not in definition.first_kinds
            and (a.account_id or "management") in wanted
        ]
        reports = run_accounts(rt, definition, actions, in_flow=True)
        work = work_key(run_id, stage)
        for report in reports:
            store.account_results.save(work, report.account_id, asdict(report), flow_run_id)
        return {r.account_id: asdict(r) for r in reports}
