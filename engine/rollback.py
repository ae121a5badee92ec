"""The engine's rollback of one plan stage: what its apply runs created, undone newest first.

Only what this migration created is undone, in the stage's ``undo_order``; adopted things
(there before the run), what the journal does not record, and what another wave's plan still
uses are left alone. Every undo goes through the journaled executor, so a rollback run resumes
like an apply run; the accounts are undone at once, as the apply did them (``engine.undo_run``).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domain import stages as registry
from domain.errors import ApplyFailed, ApplyRefused
from domain.plan import Plan
from domain.retire import parse_user
from domain.runs import APPLY_RUN, ROLLBACK_RUN
from domain.waves import still_used_by
from engine.apply import (
    check_target,
    on_action_done,
    prefect_flow_run_id,
    record_lease_run,
    stage_context,
)
from engine.executor import Executor
from engine.lease import LeaseLost, stage_lease
from engine.migration import Migration
from engine.runs import check_resumable, open_run
from engine.stage_run import entries_of_user
from engine.undo_run import (
    BLOCKED,
    PENDING,
    SKIPPED,
    UNDONE,
    describe,
    undo_everything,
)
from state import Store
from state.journal import (
    ADOPTED,
    DONE_STATUSES,
    FAILED,
    ROLLBACK_PREFIX,
    ROLLED_BACK,
    JournalEntry,
)
from tasks.handler import PollPolicy


def _forward_entries(store: Store, plan_id: int, stage: str) -> list[JournalEntry]:
    undo_order = registry.stage(stage).undo_kinds()
    entries = [
        e
        for e in store.journal.journal_entries(plan_id, stage)
        if not e.action_id.startswith(ROLLBACK_PREFIX)
    ]
    rank = {kind: i for i, kind in enumerate(undo_order)}
    # Reverse of the order they were done in, grouped so assignments go before their sets.
    ordered = list(reversed(entries))
    return sorted(ordered, key=lambda e: rank.get(e.kind, len(rank)))


def _used_by_other_plans(
    store: Store, migration_id: int, plan_id: int, stage: str, entries: list[JournalEntry]
) -> dict[str, list[str]]:
    """action id -> the other plans (waves) that still use what it created or updated."""
    if not registry.stage(stage).undo_keeps_shared or not entries:
        return {}
    uses = store.waves.journal_uses(migration_id, stage)
    found = {}
    for entry in entries:
        action = entry.intent.get("action") or {}
        users = still_used_by(
            entry.kind,
            str(action.get("target", "")),
            action.get("params") or {},
            entry.finished,
            plan_id,
            uses,
            entry.account_id,
        )
        if users:
            found[entry.action_id] = users
    return found


def rollback_plan(
    spec_path: str | Path,
    run_id: int,
    dry_run: bool = False,
    *,
    resume_run_id: int | None = None,
    fault: tuple[str, str] | None = None,
    poll: PollPolicy | None = None,
    user: str | None = None,
    in_flow: bool = False,
) -> dict[str, Any]:
    """Undo, in reverse order, what an apply run's plan and stage created; journaled.

    Only what this migration created is undone: adopted things (there before the run) and
    anything the journal does not record are never touched. Every account's undo runs at
    once, as the apply's work did (``engine.undo_run``).

    Args:
        user: ``ACCOUNT/NAME``: undo only what the run did to this one IAM user (bring one
            person back from a disable run without touching the others).
        in_flow: Run each account's undo as a Prefect task (inside ``rollback_flow``).

    Raises:
        ApplyRefused: The run is not an apply run of this migration; it deleted users
            (irreversible: see ``iamc restore``); ``user`` is malformed or not in the run.
        ApplyFailed: An account's undo failed (the others went on); a resume of the rollback
            run continues.
    """
    spec_path = str(spec_path)
    with Migration.open(spec_path) as mig:
        spec, store = mig.spec, mig.store
        run = store.runs.get_run(run_id)
        if run.migration != spec.name or run.kind != APPLY_RUN:
            raise ApplyRefused(f"run {run_id} is not an apply run of migration {spec.name!r}")
        plan_id, stage = int(run.params["plan_id"]), str(run.params["stage"])
        definition = registry.stage(stage)
        if not definition.reversible:
            hint = definition.irreversible_hint or "did what can't be undone; nothing was changed"
            raise ApplyRefused(f"run {run_id} " + hint.format(spec=spec_path, run=run_id))
        listing, undo = _undo_listing(store, run, user)
        if undo:
            _refuse_unsafe_undo(store, spec, run, stage, user, spec_path)
        if dry_run:
            return {**listing, "dry_run": True}
        params = {
            "spec": spec_path,
            "plan_id": plan_id,
            "stage": stage,
            "of_run": run_id,
            "user": user,
            "prefect_flow_run_id": prefect_flow_run_id(),
        }
        with stage_lease(store, plan_id, stage) as lease:
            if resume_run_id is not None:
                check_resumable(store, store.runs.get_run(resume_run_id), spec_path)
            # Credentials are checked before the run is recorded: a refusal records no run.
            ctx = stage_context(spec, spec_path, poll)
            rollback_run = open_run(
                store, run.migration_id, ROLLBACK_RUN, params, resume_run_id, spec_path
            )
            record_lease_run(store, lease, rollback_run)
            executor = Executor(
                store.journal,
                definition.handlers(),
                ctx,
                run_id=rollback_run,
                plan_id=plan_id,
                stage=stage,
                fault=fault,
                on_done=on_action_done,
                guard=lease.ensure,
            )
            resume = mig.hint(f"resume {rollback_run}")
            return _undo_all(store, executor, undo, listing, resume, in_flow)


def _refuse_unsafe_undo(
    store: Store, spec: Any, run: Any, stage: str, user: str | None, spec_path: str
) -> None:
    """Refuse an undo a later stage of the plan relies on, or one of another target's plan.

    Raises:
        ApplyRefused: nothing was changed.
    """
    plan_id = int(run.params["plan_id"])
    relying = _later_stages_relying(store, run, stage, user, spec_path)
    if relying:
        raise ApplyRefused(
            f"run {run.id}'s stage {stage} can't be rolled back while a later stage of plan "
            f"{plan_id} relies on it: {'; '.join(relying)}. Undoing {stage} now would leave "
            "those people with neither their old IAM user nor their new access; nothing "
            "was changed"
        )
    planned = _plan_of(store, plan_id)
    if planned is not None:
        check_target(spec, planned, plan_id)  # undo where the plan's changes were made


def _plan_of(store: Store, plan_id: int) -> Plan | None:
    """The plan whose stage is undone (its actions' dependencies order the undo)."""
    info = store.plans.get_plan(plan_id)
    return Plan.from_content(info.content) if info is not None else None


def _planned_accounts(store: Store, plan: Plan | None) -> Callable[[str], Any]:
    """account id -> the account as the plan's inventory saw it (loaded on first use)."""

    @functools.cache
    def by_id() -> dict[str, Any]:
        if plan is None:
            return {}
        snapshot = store.snapshots.load_snapshot(plan.inventory_snapshot_id)
        return {inventory.account.account_id: inventory for inventory in snapshot}

    return lambda account_id: by_id().get(account_id)


def _later_stages_relying(
    store: Store, run: Any, stage: str, user: str | None, spec_path: str
) -> list[str]:
    """What later stages of the run's plan that take access away did and still stands (not
    rolled back), and how to undo it first: a disable rests on the access provision gave.

    A stage that itself takes access away is not held back: bringing one person back from a
    disable while their delete is cut off is how an operator stops that delete (the delete's
    live checks then refuse them).
    """
    if registry.stage(stage).takes_access_away:
        return []
    plan_id, mine = int(run.params["plan_id"]), registry.order_of(stage)
    found = []
    for later in registry.stages():
        if later.order <= mine or not later.takes_access_away:
            continue
        standing = [
            e
            for e in store.journal.journal_entries(plan_id, later.name)
            if not e.action_id.startswith(ROLLBACK_PREFIX) and e.status in DONE_STATUSES
        ]
        if user is not None:
            account_id, name = parse_user(user)
            standing = [
                e
                for e in standing
                if e.account_id == account_id
                and (e.intent.get("action") or {}).get("target") == name
            ]
        if not standing:
            continue
        users = {(e.account_id, (e.intent.get("action") or {}).get("target")) for e in standing}
        runs = [
            r.id
            for r in store.runs.list_runs(run.migration_id)
            if r.kind == APPLY_RUN
            and r.params.get("plan_id") == plan_id
            and r.params.get("stage") == later.name
        ]
        first = (
            f"roll back run {runs[-1]} first ('iamc rollback {runs[-1]} -c {spec_path}')"
            if later.reversible and runs
            else "it can't be undone (restore brings users back: 'iamc restore')"
        )
        found.append(f"stage {later.name} changed {len(users)} IAM user(s): {first}")
    return found


def _undo_listing(store: Store, run: Any, user: str | None) -> tuple[dict[str, Any], list[Any]]:
    """What a rollback of ``run``'s plan stage undoes, and what it leaves alone and why."""
    run_id = run.id
    plan_id, stage = int(run.params["plan_id"]), str(run.params["stage"])
    entries = _forward_entries(store, plan_id, stage)
    if user is not None:
        entries = entries_of_user(entries, user, run_id)
    undo = [
        e
        for e in entries
        if e.status not in (ADOPTED, ROLLED_BACK) and e.intent.get("existed_before") is False
    ]
    kept = [e for e in entries if e.status == ADOPTED or e.intent.get("existed_before")]
    # Waves build on each other: what another wave's plan still uses stays, whoever made it.
    in_use = _used_by_other_plans(store, run.migration_id, plan_id, stage, undo)
    undo = [e for e in undo if e.action_id not in in_use]
    apply_runs = [
        r.id
        for r in store.runs.list_runs(run.migration_id)
        if r.kind == APPLY_RUN
        and r.params.get("plan_id") == plan_id
        and r.params.get("stage") == stage
    ]
    listing = {
        "of_run": run_id,
        "plan_id": plan_id,
        "stage": stage,
        # The unit is the plan stage, not the run named: the journal has one row per
        # action, whichever of the stage's runs did it.
        "unit": (
            f"plan {plan_id} stage {stage}, user {user} only"
            if user
            else f"plan {plan_id} stage {stage}: everything its apply runs "
            f"({', '.join(map(str, apply_runs))}) created, not only run {run_id}'s"
        ),
        "user": user,
        "undo": [describe(e) for e in undo],
        "left_alone": [f"{describe(e)} (existed before: adopted)" for e in kept]
        + [
            f"{describe(e)} (still used by {', '.join(users)}: kept; roll back again "
            "once they no longer use it)"
            for e in entries
            if (users := in_use.get(e.action_id))
        ],
    }
    return listing, undo


def _undo_all(
    store: Store,
    executor: Executor,
    undo: list[JournalEntry],
    listing: dict[str, Any],
    resume: str,
    in_flow: bool,
) -> dict[str, Any]:
    """Undo every row, accounts together (``engine.undo_run``); the run is recorded as it ends.

    Raises:
        ApplyFailed: An account's undo failed (the others went on); a resume continues.
    """
    rollback_run = executor.run_id
    try:
        plan = _plan_of(store, executor.plan_id)
        reports = undo_everything(
            executor,
            undo,
            {a.id: list(a.depends_on) for a in plan.actions} if plan else {},
            user_order=registry.stage(executor.stage).takes_access_away,
            in_flow=in_flow,
            planned=_planned_accounts(store, plan) if in_flow else None,
        )
    except LeaseLost:
        raise
    except BaseException as err:
        store.runs.finish_run(rollback_run, "failed", error=str(err) or type(err).__name__)
        raise
    statuses = Counter(s for report in reports for s in report.statuses.values())
    errors = [f"{report.account_id}: {e}" for report in reports for e in report.errors]
    summary = {
        **listing,
        "run_id": rollback_run,
        "dry_run": False,
        "undone": statuses[UNDONE] + statuses[SKIPPED],
        "failed": statuses[FAILED],
        "pending": statuses[PENDING] + statuses[BLOCKED],
        "errors": errors,
        "accounts_failed": {r.account_id: r.failure for r in reports if r.failure},
    }
    if errors:
        failed = sorted(
            {r.account_id for r in reports if FAILED in r.statuses.values()}
            or {r.account_id for r in reports if r.errors}
        )
        message = (
            f"rollback run {rollback_run}: {summary['undone']} of {len(undo)} undone; the "
            f"undo failed in {', '.join(failed)} (the other accounts' undo went on; what "
            f"it still uses is kept); fix the cause, then '{resume}':\n  " + "\n  ".join(errors)
        )
        store.runs.finish_run(rollback_run, "failed", summary=summary, error=message)
        raise ApplyFailed(message)
    store.runs.finish_run(rollback_run, "succeeded", summary=summary)
    return summary
