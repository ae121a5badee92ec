"""Where each wave of a migration stands, per stage and per account, read from the state store.

``centralize`` works through the waves in order and continues each at its first unfinished
step; the migration status artifact shows every wave's accounts by stage. A wave's plan is the
latest plan computed for it; once a stage of it was approved or applied it stays the wave's
plan of record (a newer inventory, such as the one after a delete, does not make it stale).
Read-only: no AWS, no Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain import stages as registry
from domain.errors import WaveError
from domain.inventory_report import inventory_rows
from domain.plan import Plan
from domain.retire import BakeState
from domain.runs import (
    APPLY_RUN,
    NOTIFY_RUN,
    ROLLBACK_RUN,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_SUCCEEDED,
    VERIFY_RUN,
    RunInfo,
)
from domain.waves import resolve_waves
from engine.bake_evidence import BAKE_RUN, bake_report
from engine.migration import Migration
from engine.progress import MigrationProgress, decision_record, migration_progress
from engine.runs import view_runs
from state.journal import FAILED

# A whole-stage rollback after the stage's last apply: the stage is undone, not pending.
ROLLED_BACK = "rolled-back"
# What a stage is for one account.
DONE, FAILED_HERE, PENDING, NOTHING = "done", "failed", "pending", "nothing to do"
INVENTORY_RUN = "inventory"


@dataclass(frozen=True)
class AccountStage:
    """One account's state in one stage of its wave's plan."""

    status: str  # done | failed | pending | nothing to do
    done: int = 0
    actions: int = 0
    error: str | None = None  # the first failed action's reason


@dataclass(frozen=True)
class StageState:
    """A stage of a wave's plan: its approval, its latest apply run, each account."""

    name: str
    actions: int
    approval: dict[str, Any] | None = None  # the latest decision authorising it (this hash)
    run_id: int | None = None  # the latest apply run of (plan, stage)
    status: str | None = None  # its lifecycle status, or ROLLED_BACK
    accounts: dict[str, AccountStage] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.approval is not None and self.approval["decision"] == "approved"

    @property
    def done(self) -> bool:
        return self.status == RUN_SUCCEEDED

    @property
    def resumable(self) -> bool:
        return self.run_id is not None and self.status in (RUN_FAILED, RUN_INTERRUPTED)


@dataclass(frozen=True)
class WaveProgress:
    """Where one wave stands; ``wave`` is None for a spec without waves (its scope)."""

    wave: str | None
    accounts: tuple[str, ...] = ()
    plan_id: int | None = None
    plan_hash: str | None = None
    plan_blocking: int = 0
    plan_current: bool = False  # the plan to work with: of record, or of the current mapping
    stages: dict[str, StageState] = field(default_factory=dict)
    verify_run_id: int | None = None  # latest succeeded verify run of the plan
    verify_failed_run_id: int | None = None  # a later verify run that failed
    notify_run_id: int | None = None
    bake_counts: dict[str, int] = field(default_factory=dict)  # the recorded bake report
    bake_run_id: int | None = None  # the latest succeeded bake watch after the disable run
    final_inventory_run_id: int | None = None  # a succeeded inventory after the delete run
    cis: dict[str, dict[str, str]] = field(default_factory=dict)  # account -> verdict, why, name

    @property
    def label(self) -> str:
        return self.wave or "(scope)"

    def stage(self, name: str) -> StageState:
        return self.stages.get(name) or StageState(name, 0)


def wave_names(mig: Migration) -> list[str | None]:
    """The spec's waves in order, or ``[None]`` for a spec without waves."""
    return [w.name for w in mig.spec.waves] or [None]


def _approval(info: Any, stage: str) -> dict[str, Any] | None:
    authorising = registry.authorised_by(stage)
    found = [
        a
        for a in info.approvals
        if a.plan_hash == info.hash
        and (a.stage in authorising or (a.stage == registry.ALL and a.decision == "rejected"))
    ]
    if not found:
        return None
    return decision_record(found[-1])


def _stage_status(runs: list[RunInfo], views: dict[int, Any], plan_id: int, stage: str) -> tuple:
    """(latest apply run id, its status or ROLLED_BACK when a whole-stage rollback followed)."""
    mine = [
        r
        for r in runs
        if r.kind in (APPLY_RUN, ROLLBACK_RUN)
        and r.params.get("plan_id") == plan_id
        and r.params.get("stage") == stage
    ]
    applies = [r for r in mine if r.kind == APPLY_RUN]
    if not applies:
        return None, None
    last_apply = applies[-1]
    undone = [
        r
        for r in mine
        if r.kind == ROLLBACK_RUN
        and r.id > last_apply.id
        and not r.params.get("user")
        and views[r.id].status == RUN_SUCCEEDED
    ]
    return last_apply.id, ROLLED_BACK if undone else views[last_apply.id].status


def _account_stages(plan: Plan, entries: dict[str, Any], stage: str) -> dict[str, AccountStage]:
    by_account: dict[str, list[Any]] = {}
    for action in plan.actions:
        if action.stage == stage:
            by_account.setdefault(action.account_id or "management", []).append(action)
    found: dict[str, AccountStage] = {}
    for account, actions in by_account.items():
        rows = [entries.get(a.id) for a in actions]
        done = sum(1 for e in rows if e is not None and e.done)
        failed = [e for e in rows if e is not None and e.status == FAILED]
        if failed:
            status = FAILED_HERE
        elif done == len(actions):
            status = DONE
        else:
            status = PENDING
        error = failed[0].error if failed else None
        found[account] = AccountStage(status, done, len(actions), error)
    return found


def _wave_plan(runs: list[RunInfo], wave: str | None) -> RunInfo | None:
    """The latest succeeded plan run of the wave that stored a plan."""
    planned = [
        r
        for r in runs
        if r.kind == "plan"
        and r.status == RUN_SUCCEEDED
        and r.params.get("wave") == wave
        and (r.summary or {}).get("plan_id") is not None
    ]
    return planned[-1] if planned else None


def _accounts_of(mig: Migration, snapshot_accounts: dict[str, Any]) -> dict[str | None, list[str]]:
    """Each wave's accounts from the latest snapshot (a planned wave: as its plan says)."""
    spec = mig.spec
    if not spec.waves:
        return {None: sorted(snapshot_accounts)}
    chains = {
        a: [inv.account.parent_id] if inv.account.parent_id else []
        for a, inv in snapshot_accounts.items()
    }
    try:
        return dict(resolve_waves(spec, chains))
    except WaveError:
        return {}


def waves_progress(mig: Migration, base: MigrationProgress | None = None) -> list[WaveProgress]:
    """Every wave of the spec, in order (see :class:`WaveProgress`)."""
    base = base or migration_progress(mig)
    store = mig.store
    if base.migration_id is None:
        return [WaveProgress(w) for w in wave_names(mig)]
    runs = store.runs.list_runs(base.migration_id)
    views = view_runs(runs, store.leases.list_stage_locks())
    inventories = (
        {
            i.account.account_id: i
            for i in store.snapshots.load_snapshot(base.snapshot_id, policies=False)
        }
        if base.snapshot_id is not None
        else {}
    )
    rows = {
        r["account_id"]: r
        for r in inventory_rows(
            list(inventories.values()),
            datetime.now(UTC),
            mig.spec.cis,
            store.workloads.latest(base.migration_id),
            mig.spec.central_account,
        )
    }
    accounts_of = _accounts_of(mig, inventories)
    return [
        _wave(mig, base, runs, views, wave, accounts_of.get(wave, []), rows)
        for wave in wave_names(mig)
    ]


def _wave(
    mig: Migration,
    base: MigrationProgress,
    runs: list[RunInfo],
    views: dict[int, Any],
    wave: str | None,
    accounts: list[str],
    rows: dict[str, dict[str, Any]],
) -> WaveProgress:
    store = mig.store
    found: dict[str, Any] = {"wave": wave}
    plan_run = _wave_plan(runs, wave)
    info = store.plans.get_plan(int(plan_run.summary["plan_id"])) if plan_run else None  # type: ignore[index]
    if plan_run is None or info is None:
        return WaveProgress(**found, accounts=tuple(accounts), cis=_cis(rows, accounts))
    plan = Plan.from_content(info.content)
    if plan.wave:
        accounts = list(plan.wave["accounts"])
    entries = {e.action_id: e for e in store.journal.journal_entries(info.id)}
    stages: dict[str, StageState] = {}
    for definition in registry.stages():
        name = definition.name
        run_id, status = _stage_status(runs, views, info.id, name)
        stages[name] = StageState(
            name,
            sum(1 for a in plan.actions if a.stage == name),
            _approval(info, name),
            run_id,
            status,
            _account_stages(plan, entries, name),
        )
    of_record = any(s.run_id is not None or s.approved for s in stages.values())
    current = (
        base.mapping_done and base.mapping_run_id is not None and plan_run.id > base.mapping_run_id
    )
    verify = [r for r in runs if r.kind == VERIFY_RUN and r.params.get("plan_id") == info.id]
    verified = [r for r in verify if r.status == RUN_SUCCEEDED]
    notified = [
        r
        for r in runs
        if r.kind == NOTIFY_RUN and r.params.get("plan_id") == info.id and r.status == RUN_SUCCEEDED
    ]
    final = None
    if all(s.done or s.actions == 0 for s in stages.values()):
        # The inventory that shows what the wave's last stage run left behind.
        last = max([plan_run.id] + [s.run_id for s in stages.values() if s.done and s.run_id])
        after = [
            r for r in runs if r.kind == INVENTORY_RUN and r.status == RUN_SUCCEEDED and r.id > last
        ]
        final = after[-1].id if after else None
    return WaveProgress(
        **found,
        accounts=tuple(accounts),
        plan_id=info.id,
        plan_hash=info.hash,
        plan_blocking=info.blocking,
        plan_current=of_record or current,
        stages=stages,
        verify_run_id=verified[-1].id if verified else None,
        verify_failed_run_id=(
            verify[-1].id if verify and verify[-1].status != RUN_SUCCEEDED else None
        ),
        notify_run_id=notified[-1].id if notified else None,
        bake_counts=_bake_counts(mig, info.id, stages),
        bake_run_id=_bake_run(runs, stages),
        final_inventory_run_id=final,
        cis=_cis(rows, accounts),
    )


def _bake_run(runs: list[RunInfo], stages: dict[str, StageState]) -> int | None:
    disable = stages.get("disable")
    if disable is None or not disable.done or disable.run_id is None:
        return None
    watched = [
        r.id
        for r in runs
        if r.kind == BAKE_RUN and r.status == RUN_SUCCEEDED and r.id > disable.run_id
    ]
    return watched[-1] if watched else None


def _bake_counts(mig: Migration, plan_id: int, stages: dict[str, StageState]) -> dict[str, int]:
    """The plan's disabled users by bake state, as recorded (no AWS read)."""
    disable = stages.get("disable")
    if disable is None or disable.run_id is None:
        return {}
    report = bake_report(mig.spec_path, collect=False, plan_id=plan_id)
    return dict(sorted(report["counts"].items()))


def _cis(rows: dict[str, dict[str, Any]], accounts: list[str]) -> dict[str, dict[str, str]]:
    """The CIS 1.21 verdict of each account as the latest inventory computed it."""
    return {
        a: {
            "verdict": rows[a]["cis_1_21"],
            "why": rows[a]["cis_1_21_why"],
            "name": rows[a]["account_name"] or "",
        }
        for a in accounts
        if a in rows
    }


def waiting_to_bake(counts: dict[str, int]) -> int:
    """How many disabled users the bake still holds (baking, or in use with no decision)."""
    return counts.get(BakeState.BAKING, 0) + counts.get(BakeState.IN_USE, 0)
