"""Runbook steps 3, 5 and 7: apply an approved plan stage, journaled; resume, status, rollback.

Every mutating step goes through ``engine.executor.Executor``, which records it in the state
store's journal before and after the AWS call; re-running ``apply_flow`` on the same plan and
stage (a Prefect Retry, ``iamc resume``) skips what is done and reconciles what was cut off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from console.artifacts import publish_apply, publish_rollback
from console.operator import (
    ProgressEvents,
    account_label,
    operator_step,
    resolve_plan_id,
    settle,
    task_outcome,
)
from console.prefect_runtime import old_objects_frozen
from console.waves import publish_waves_artifact
from domain.deletion import over_delete_cap, users_to_delete
from domain.errors import (
    ActionError,
    ApplyFailed,
    ApplyRefused,
    BlockedError,
    ConflictError,
)
from domain.plan import Outcome, Plan, PlanAction, Stage, UserPlan
from domain.progress import emit
from domain.records import AccountInventory
from domain.runs import APPLY_RUN, ROLLBACK_RUN
from domain.spec import MigrationSpec, load_spec
from domain.waves import still_used_by
from engine.approvals import unapproved_reason
from engine.executor import Executor
from engine.lease import LeaseLost, StageLease, stage_lease
from engine.preflight import live_access_changes, preflight, stale_targets
from engine.runs import check_resumable, open_run
from flows import retire
from state import Store
from state.journal import (
    ADOPTED,
    DONE_STATUSES,
    FAILED,
    ROLLBACK_PREFIX,
    ROLLED_BACK,
    JournalEntry,
)
from state.plans import PlanInfo
from tasks.assignments import verify_assignments
from tasks.aws import AwsSessions
from tasks.handler import ExecutionContext, PollPolicy
from tasks.identity_store import find_instance
from tasks.provisioning import HANDLERS as PROVISION_HANDLERS
from tasks.provisioning import PERMISSION_SET_KINDS
from tasks.provisioning import UNDO_ORDER as PROVISION_UNDO_ORDER
from tasks.user_disable import HANDLERS as DISABLE_HANDLERS
from tasks.user_disable import UNDO_ORDER as DISABLE_UNDO_ORDER
from tasks.user_teardown import HANDLERS as DELETE_HANDLERS

log = logging.getLogger(__name__)

IMPLEMENTED_STAGES = (Stage.PROVISION, Stage.DISABLE, Stage.DELETE)
ACCOUNT_CONCURRENCY = 8
HANDLERS = {**PROVISION_HANDLERS, **DISABLE_HANDLERS, **DELETE_HANDLERS}
UNDO_ORDER = (*PROVISION_UNDO_ORDER, *DISABLE_UNDO_ORDER)


@dataclass
class AccountReport:
    """What one account's task did: statuses by action, and why it stopped, if it did."""

    account_id: str
    # Left out of the repr: Prefect logs a failed task's state, and the repr is in it.
    statuses: dict[str, str] = field(default_factory=dict, repr=False)
    errors: list[str] = field(default_factory=list, repr=False)
    # Users the stage's live preconditions refused: {account_id, user, reason}.
    refused: list[dict[str, str]] = field(default_factory=list, repr=False)


class _Runtime:
    """What the tasks share. A plain class, so Prefect does not walk or hash it."""

    def __init__(
        self,
        spec: MigrationSpec,
        store: Store,
        plan: Plan,
        plan_id: int,
        executor: Executor,
    ):
        self.spec = spec
        self.store = store
        self.plan = plan
        self.plan_id = plan_id
        self.executor = executor
        self.ctx = executor.ctx
        # The retire stages' extras (flows.retire): the migration, and what "now" is.
        self.migration_id = 0
        self.clock: Callable[[], datetime] = retire.utc_now
        self._planned: dict[str, AccountInventory] | None = None
        self._actions: dict[str, PlanAction] | None = None
        self._users: dict[tuple[str, str], UserPlan] | None = None
        self._lock = threading.Lock()

    def planned_account(self, account_id: str) -> AccountInventory | None:
        """The account as the plan's inventory snapshot saw it (loaded once, on first use)."""
        with self._lock:
            if self._planned is None:
                self._planned = {
                    inventory.account.account_id: inventory
                    for inventory in self.store.snapshots.load_snapshot(
                        self.plan.inventory_snapshot_id
                    )
                }
        return self._planned.get(account_id)

    def action(self, action_id: str) -> PlanAction | None:
        """One of the plan's actions by id (indexed on first use)."""
        with self._lock:
            if self._actions is None:
                self._actions = {a.id: a for a in self.plan.actions}
        return self._actions.get(action_id)

    def user_plan(self, account_id: str, user: str) -> UserPlan | None:
        """What the plan says of one IAM user (indexed on first use)."""
        with self._lock:
            if self._users is None:
                self._users = {(u.account_id, u.user): u for u in self.plan.users}
        return self._users.get((account_id, user))

    def users_acted_for(self, account_id: str) -> list[str]:
        """The IAM users of an account whose access this plan reproduces or retires."""
        return [
            u.user
            for u in self.plan.users
            if u.account_id == account_id and u.outcome in (Outcome.MIGRATE, Outcome.RETIRE)
        ]


# -- checks before anything is changed ----------------------------------------------------------


def _plan_info(store: Store, spec: MigrationSpec, plan_id: int) -> PlanInfo:
    info = store.plans.get_plan(plan_id)
    if info is None or info.migration != spec.name:
        raise ApplyRefused(f"no plan {plan_id} in migration {spec.name!r}")
    return info


def check_runnable(info: PlanInfo, stage: str, spec_path: str) -> Plan:
    """The plan, if its content is intact and the change board approved this stage.

    Raises:
        ApplyRefused: unknown or unimplemented stage, changed content, blocking errors,
            rejected or missing approval.
    """
    if stage not in {s.value for s in Stage}:
        raise ApplyRefused(f"--stage: expected one of provision, disable, delete; got {stage!r}")
    if stage not in IMPLEMENTED_STAGES:
        raise ApplyRefused(
            f"stage {stage!r} is not implemented yet in this version: only 'provision' can be "
            "applied; nothing was changed"
        )
    plan = Plan.from_content(info.content)
    if plan.content_hash() != info.hash:
        raise ApplyRefused(
            f"plan {info.id} changed since it was computed (stored hash {info.hash[:12]}): "
            "refusing; compute a new plan with 'iamc plan'"
        )
    if plan.blocking_for(stage):
        blocking = len(plan.blocking_for(stage))
        raise ApplyRefused(f"plan {info.id} has {blocking} blocking error(s): re-plan")
    # Delete is approved on its own: an approval of "all" never covers it (issue 21).
    refusal = unapproved_reason(info, stage, spec_path)
    if refusal:
        raise ApplyRefused(refusal)
    return plan


def check_delete_cap(
    store: Store, spec: MigrationSpec, plan_id: int, actions: list[PlanAction]
) -> None:
    """The blast-radius cap: refuse a delete run that would delete more users than allowed.

    Counts the stage's users the journal does not have as deleted, in all and per account,
    before any AWS call; users the bake check would still hold are counted too (a bound).

    Raises:
        ApplyRefused: over ``[decommission] max_deletes_per_run`` or
            ``max_deletes_per_account``, saying by how much; nothing was changed.
    """
    done = {e.action_id for e in store.journal.journal_entries(plan_id, Stage.DELETE) if e.done}
    caps = spec.decommission
    excess = over_delete_cap(
        users_to_delete(actions, done), caps.max_deletes_per_run, caps.max_deletes_per_account
    )
    if excess:
        raise ApplyRefused(
            f"plan {plan_id} stage delete is over the blast-radius cap; nothing was changed, "
            "no user was deleted:\n  " + "\n  ".join(excess) + "\nRaise [decommission] "
            "max_deletes_per_run / max_deletes_per_account in the spec (a reviewed change), or "
            "plan and delete in smaller waves"
        )


def check_wave(spec: MigrationSpec, plan: Plan, plan_id: int) -> None:
    """Refuse a wave's plan once the spec no longer has that wave (or has waves, or none).

    Raises:
        ApplyRefused: the plan's wave and the spec's waves disagree; nothing was changed.
    """
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


# -- the work ------------------------------------------------------------------------------------


def _run_one(rt: _Runtime, action: PlanAction, report: AccountReport) -> bool:
    """Run one action; False when its account must stop (it failed)."""
    try:
        report.statuses[action.id] = rt.executor.run(action)
    except ConflictError:
        raise
    except BlockedError as err:
        report.statuses[action.id] = "blocked"
        report.errors.append(str(err))
    except ActionError as err:
        report.statuses[action.id] = FAILED
        report.errors.append(str(err))
        return False
    return True


def create_permission_sets(rt: _Runtime, actions: list[PlanAction]) -> AccountReport:
    """Create (or adopt) every permission set, in the management account, several at once.

    Every account waits for them, so they go at the rate sso-admin allows rather than one
    call at a time; each set's own calls stay in order.
    """
    report = AccountReport("management")
    # A set that fails leaves only its own provisioning and assignments blocked.
    _run_concurrently(rt, "management", actions, report, "create", stop_on_failure=False)
    return report


def _refused_as_changed(
    rt: _Runtime, account_id: str, actions: list[PlanAction], report: AccountReport
) -> bool:
    """Re-read the account live before its first change; True (and why) if it changed.

    Only when the account still has work to do: a finished account is not re-read.
    """
    pending = [
        a
        for a in actions
        if (entry := rt.store.journal.journal_entry(rt.plan_id, a.id)) is None or not entry.done
    ]
    planned = rt.planned_account(account_id)
    if not pending or planned is None:
        return False
    changes = live_access_changes(
        rt.ctx.member(account_id), planned, rt.users_acted_for(account_id)
    )
    if not changes:
        return False
    for action in pending:
        report.statuses[action.id] = "refused"
    report.errors.append(
        f"account {account_id}: nothing changed here, because IAM changed since the plan was "
        "made (re-run inventory, map and plan, then approve again): " + "; ".join(changes)
    )
    return True


def _run_concurrently(
    rt: _Runtime,
    account_id: str,
    actions: list[PlanAction],
    report: AccountReport,
    what: str,
    *,
    stop_on_failure: bool = True,
) -> bool:
    """Run actions on up to ``max_outstanding`` threads; False when one failed.

    The first failure stops the actions not yet started, unless told otherwise (those in
    flight finish and are journaled); the shared sso-admin limiter and the context's
    semaphore of outstanding creations bound what all accounts send together.
    """
    stop = threading.Event()
    failed = threading.Event()

    def work(action: PlanAction) -> None:
        if stop.is_set():
            return
        if not _run_one(rt, action, report):
            failed.set()
            if stop_on_failure:
                stop.set()

    workers = max(1, min(rt.ctx.max_outstanding, len(actions)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{what}-{account_id}") as pool:
        futures = [pool.submit(work, action) for action in actions]
        for future in futures:
            future.result()
    return not failed.is_set()


def _verify_account(
    rt: _Runtime, account_id: str, assignments: list[PlanAction], report: AccountReport
) -> None:
    """Confirm the account's done assignments exist, as soon as its own work is over.

    Inside the account's task, so a missing assignment fails that account (not the run's
    end), while the other accounts are still at work.
    """
    rt.executor.check_alive()
    done = [
        a
        for a in assignments
        if (entry := rt.store.journal.journal_entry(rt.plan_id, a.id)) is not None and entry.done
    ]
    missing = verify_assignments(rt.ctx, done)
    report.errors.extend(f"verify: {m}" for m in missing)
    emit("account-verified", account_id=account_id, checked=len(done), missing=len(missing))


def provision_account(rt: _Runtime, account_id: str, actions: list[PlanAction]) -> AccountReport:
    """Provision the account's permission sets, create its assignments, then verify them.

    The permission sets are provisioned together, then the assignments are created, each on
    up to ``max_outstanding`` threads (all accounts together capped by the context's
    semaphore of outstanding creations); the first FAILED one stops the account's actions not
    yet started, and its reason is recorded. Whatever happened, the assignments the journal
    has as done are then verified (:func:`tasks.assignments.verify_assignments`).
    """
    report = AccountReport(account_id)
    assignments = [a for a in actions if a.kind == "create-assignment"]
    if not _refused_as_changed(rt, account_id, actions, report):
        provisions = [a for a in actions if a.kind == "provision-permission-set"]
        if _run_concurrently(rt, account_id, provisions, report, "provision"):
            _run_concurrently(rt, account_id, assignments, report, "assign")
    _verify_account(rt, account_id, assignments, report)
    return report


@task(
    name="create-permission-sets",
    task_run_name="create permission sets",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def create_permission_sets_task(rt: _Runtime, actions: list[PlanAction]) -> Any:
    """Ends Failed (one message, no traceback) when a permission set failed."""
    return task_outcome(
        "permission sets", lambda: create_permission_sets(rt, actions), len(actions)
    )


@task(
    name="provision-account",
    task_run_name="provision {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def provision_account_task(
    rt: _Runtime, account_id: str, actions: list[PlanAction], label: str = ""
) -> Any:
    """Ends Failed (one message, no traceback) when the account failed; others go on."""
    return task_outcome(
        label or account_id, lambda: provision_account(rt, account_id, actions), len(actions)
    )


def _by_account(actions: list[PlanAction]) -> dict[str, list[PlanAction]]:
    grouped: dict[str, list[PlanAction]] = {}
    for action in actions:
        if action.account_id:
            grouped.setdefault(action.account_id, []).append(action)
    return dict(sorted(grouped.items()))


def _execute(
    rt: _Runtime, actions: list[PlanAction], in_flow: bool, stage: str = Stage.PROVISION
) -> list[AccountReport]:
    if stage != Stage.PROVISION:
        return retire.retire_accounts(rt, stage, actions, in_flow, ACCOUNT_CONCURRENCY)
    sets = [a for a in actions if a.kind in PERMISSION_SET_KINDS]
    accounts = _by_account([a for a in actions if a.kind not in PERMISSION_SET_KINDS])
    if in_flow:
        reports = [settle(create_permission_sets_task.submit(rt, sets))]
        futures = [
            provision_account_task.submit(
                rt, account_id, account_actions, account_label(rt.planned_account(account_id))
            )
            for account_id, account_actions in accounts.items()
        ]
        reports.extend(settle(future) for future in futures)
        return reports
    reports = [create_permission_sets(rt, sets)]
    reports.extend(
        provision_account(rt, a, account_actions) for a, account_actions in accounts.items()
    )
    return reports


def _prefect_flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def _context(spec: MigrationSpec, spec_path: str, poll: PollPolicy | None) -> ExecutionContext:
    sessions = AwsSessions.from_spec(spec)
    management = sessions.management()
    instance = find_instance(
        management,
        identity_store_id=spec.mapping.identity_store_id,
        instance_arn=spec.mapping.instance_arn,
        spec_path=spec_path,
    )
    if poll is None and spec.aws.first_status_poll_s is not None:
        poll = PollPolicy(first=spec.aws.first_status_poll_s)
    return ExecutionContext(management, sessions.for_account, instance, poll=poll)


def _on_done(action_id: str, status: str, error: str | None) -> None:
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

    Returns:
        The run's summary.

    Raises:
        ApplyRefused: Unapproved, stale, conflicting or unimplemented; nothing was changed.
        ApplyFailed: Some actions failed; the rest is done, and a resume continues.
    """
    spec_path = str(spec_path)
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        info = _plan_info(store, spec, plan_id)
        plan = check_runnable(info, stage, spec_path)
        check_wave(spec, plan, plan_id)
        actions = [a for a in plan.actions if a.stage == stage]
        params = {
            "spec": spec_path,
            "plan_id": plan_id,
            "stage": stage,
            "prefect_flow_run_id": _prefect_flow_run_id() if in_flow else None,
        }
        # The lease first: a second process is refused at once, before any AWS read, and no
        # other run of this stage can start while the checks below read live AWS.
        with stage_lease(store, plan_id, stage) as lease:
            if resume_run_id is not None:
                check_resumable(store, store.runs.get_run(resume_run_id), spec_path)
            # -- issue 21: the blast-radius cap, before any AWS call and any deletion --
            if stage == Stage.DELETE:
                check_delete_cap(store, spec, plan_id, actions)
            ctx = _context(spec, spec_path, poll)
            if stage != Stage.DELETE:
                # Disabling changes the users it plans from, so the delete stage checks each
                # user live instead (flows.retire_delete), right before its first delete.
                _refuse_if_stale(store, info.migration_id, plan, plan_id, ctx)
            problems = preflight(store, plan_id, ctx, actions)
            if problems:
                # A refusal before any change records no run.
                raise ApplyRefused(
                    f"plan {plan_id} can't be applied as is; nothing was changed:\n  "
                    + "\n  ".join(problems)
                )
            run_id = open_run(store, info.migration_id, APPLY_RUN, params, resume_run_id, spec_path)
            _record_lease_run(store, lease, run_id)
            executor = Executor(
                store.journal,
                HANDLERS,
                ctx,
                run_id=run_id,
                plan_id=plan_id,
                stage=stage,
                fault=fault,
                on_done=_on_done,
                guard=lease.ensure,
            )
            rt = _Runtime(spec, store, plan, plan_id, executor)
            rt.migration_id = info.migration_id
            rt.clock = clock or retire.utc_now
            try:
                emit("apply-start", actions=len(actions), run_id=run_id)
                # Each account's task verifies its assignments when its own work is over.
                # Prefect, botocore and the plan stay out of the collector's passes: a full pass
                # stops every thread, up to 0.65 s in which no sso-admin request goes out.
                with old_objects_frozen():
                    reports = _execute(rt, actions, in_flow, stage)
            except ConflictError as err:
                store.runs.finish_run(run_id, "failed", error=str(err))
                raise ApplyRefused(f"run {run_id} stopped: {err}") from err
            except LeaseLost:
                # The run is another process's now (it may have resumed it): not ours to end.
                raise
            except BaseException as err:
                store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
                raise
            summary = _summary(store, run_id, plan_id, stage, actions)
            errors = [e for r in reports for e in r.errors]
            summary["errors"] = errors
            if stage != Stage.PROVISION:
                summary["refused_by_plan"] = retire.refused_by_plan(plan)
                summary["refused"] = [r for report in reports for r in report.refused]
            if errors or summary["failed"] or summary["pending"]:
                message = (
                    f"run {run_id}: {summary['failed']} failed, {summary['pending']} pending of "
                    f"{summary['actions']} actions; fix the cause, then 'iamc resume {run_id} -c "
                    f"{spec_path}':\n  " + "\n  ".join(errors or ["(see iamc status)"])
                )
                store.runs.finish_run(run_id, "failed", summary=summary, error=message)
                raise ApplyFailed(message)
            store.runs.finish_run(run_id, "succeeded", summary=summary)
            return summary


def _record_lease_run(store: Store, lease: StageLease, run_id: int) -> None:
    """Say which run holds each lease of the group (shown to anyone refused)."""
    for each in lease.stages:
        store.leases.stage_lock_run(lease.plan_id, each, lease.holder, run_id)


def _refuse_if_stale(
    store: Store, migration_id: int, plan: Plan, plan_id: int, ctx: ExecutionContext
) -> None:
    stale = stale_targets(store, migration_id, plan, ctx.management, ctx.instance.identity_store_id)
    if stale:
        raise ApplyRefused(
            f"plan {plan_id} is stale: {len(stale)} target(s) changed since it was "
            "computed; nothing was changed. Re-run inventory, map and plan, then approve "
            "again:\n  " + "\n  ".join(stale)
        )


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


@flow(
    name="apply",
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
            (see ``flows.retire``).
        resume_run_id: Continue this apply run instead of starting one (``iamc resume``).

    Returns:
        The run's summary: counts of succeeded, adopted, failed and pending actions.
    """
    plan_id = resolve_plan_id(spec_path, plan_id)
    try:
        return apply_plan(spec_path, plan_id, str(stage), resume_run_id=resume_run_id, in_flow=True)
    finally:
        publish_waves_artifact(spec_path)


# -- rollback ------------------------------------------------------------------------------------


def _forward_entries(store: Store, plan_id: int, stage: str) -> list[JournalEntry]:
    entries = [
        e
        for e in store.journal.journal_entries(plan_id, stage)
        if not e.action_id.startswith(ROLLBACK_PREFIX)
    ]
    rank = {kind: i for i, kind in enumerate(UNDO_ORDER)}
    # Reverse of the order they were done in, grouped so assignments go before their sets.
    ordered = list(reversed(entries))
    return sorted(ordered, key=lambda e: rank.get(e.kind, len(rank)))


def _used_by_other_plans(
    store: Store, migration_id: int, plan_id: int, stage: str, entries: list[JournalEntry]
) -> dict[str, list[str]]:
    """action id -> the other plans (waves) that still use what it created or updated."""
    if stage != Stage.PROVISION or not entries:
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
        )
        if users:
            found[entry.action_id] = users
    return found


def _describe(entry: JournalEntry) -> str:
    target = (entry.intent.get("action") or {}).get("target", entry.action_id)
    where = f" in {entry.account_id}" if entry.account_id else ""
    return f"{entry.kind} {target}{where}"


def rollback_plan(
    spec_path: str | Path,
    run_id: int,
    dry_run: bool = False,
    *,
    resume_run_id: int | None = None,
    fault: tuple[str, str] | None = None,
    poll: PollPolicy | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Undo, in reverse order, what an apply run's plan and stage created; journaled.

    Only what this migration created is undone: adopted things (there before the run) and
    anything the journal does not record are never touched.

    Args:
        user: ``ACCOUNT/NAME``: undo only what the run did to this one IAM user (bring one
            person back from a disable run without touching the others).

    Raises:
        ApplyRefused: The run is not an apply run of this migration; it deleted users
            (irreversible: see ``iamc restore``); ``user`` is malformed or not in the run.
        ApplyFailed: An undo failed; a resume of the rollback run continues.
    """
    spec_path = str(spec_path)
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        run = store.runs.get_run(run_id)
        if run.migration != spec.name or run.kind != APPLY_RUN:
            raise ApplyRefused(f"run {run_id} is not an apply run of migration {spec.name!r}")
        plan_id, stage = int(run.params["plan_id"]), str(run.params["stage"])
        if stage == Stage.DELETE:
            raise ApplyRefused(
                f"run {run_id} deleted IAM users, which can't be undone (a re-created user "
                f"gets a new unique id); nothing was changed. Re-create what AWS allows from "
                f"the snapshots: 'iamc restore -c {spec_path} --run {run_id}' or "
                f"'iamc restore -c {spec_path} ACCOUNT/NAME'"
            )
        entries = _forward_entries(store, plan_id, stage)
        if user is not None:
            entries = retire.entries_of_user(entries, user, run_id)
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
            "undo": [_describe(e) for e in undo],
            "left_alone": [f"{_describe(e)} (existed before: adopted)" for e in kept]
            + [
                f"{_describe(e)} (still used by {', '.join(users)}: kept; roll back again "
                "once they no longer use it)"
                for e in entries
                if (users := in_use.get(e.action_id))
            ],
        }
        if dry_run:
            return {**listing, "dry_run": True}
        params = {
            "spec": spec_path,
            "plan_id": plan_id,
            "stage": stage,
            "of_run": run_id,
            "user": user,
            "prefect_flow_run_id": _prefect_flow_run_id(),
        }
        with stage_lease(store, plan_id, stage) as lease:
            if resume_run_id is not None:
                check_resumable(store, store.runs.get_run(resume_run_id), spec_path)
            # Credentials are checked before the run is recorded: a refusal records no run.
            ctx = _context(spec, spec_path, poll)
            rollback_run = open_run(
                store, run.migration_id, ROLLBACK_RUN, params, resume_run_id, spec_path
            )
            _record_lease_run(store, lease, rollback_run)
            executor = Executor(
                store.journal,
                HANDLERS,
                ctx,
                run_id=rollback_run,
                plan_id=plan_id,
                stage=stage,
                fault=fault,
                on_done=_on_done,
                guard=lease.ensure,
            )
            try:
                for entry in undo:
                    executor.undo(entry)
            except LeaseLost:
                raise
            except ActionError as err:
                message = (
                    f"rollback run {rollback_run} stopped: {err}; 'iamc resume {rollback_run}'"
                )
                store.runs.finish_run(rollback_run, "failed", error=message)
                raise ApplyFailed(message) from err
            except BaseException as err:
                store.runs.finish_run(rollback_run, "failed", error=str(err) or type(err).__name__)
                raise
            summary = {**listing, "run_id": rollback_run, "dry_run": False}
            store.runs.finish_run(rollback_run, "succeeded", summary=summary)
            return summary


@flow(name="rollback", log_prints=False, persist_result=False)
@operator_step("rollback", publish=publish_rollback)
def rollback_flow(
    spec_path: str,
    run_id: int,
    dry_run: bool = False,
    resume_run_id: int | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Undo what an apply run did: assignments before permission sets; for a disable run,
    credentials back to their prior status, then the quarantine lifted.

    Args:
        spec_path: The migration spec (TOML).
        run_id: The apply run to roll back.
        dry_run: Only list what would be undone and what is left alone.
        resume_run_id: Continue this rollback run instead of starting one.
        user: ``ACCOUNT/NAME``: only this IAM user (bring one person back).
    """
    return rollback_plan(spec_path, run_id, dry_run, resume_run_id=resume_run_id, user=user)


def resume(spec_path: str | Path, run_id: int) -> dict[str, Any]:
    """Continue an apply or rollback run where it stopped, under the same run id."""
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        run = store.runs.get_run(run_id)
        if run.kind == "restore":  # journaled too, but not a plan stage's run
            from flows.restore import resume_restore

            return resume_restore(spec_path, run_id)
        if run.migration != spec.name or run.kind not in (APPLY_RUN, ROLLBACK_RUN):
            raise ApplyRefused(f"run {run_id} is not an apply or rollback run of {spec.name!r}")
        # Refused here, before a flow run starts, and again under the stage lease.
        check_resumable(store, run, spec_path)
    if run.kind == APPLY_RUN:
        return apply_flow(
            str(spec_path), int(run.params["plan_id"]), str(run.params["stage"]), run_id
        )
    return rollback_flow(
        str(spec_path), int(run.params["of_run"]), False, run_id, run.params.get("user")
    )
