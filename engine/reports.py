"""What the stored state says, for people: the latest inventory report, mapping, plans, waves.

Read-only: these read an opened migration's store; no AWS, no Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain import stages as registry
from domain.errors import (
    NoInventoryError,
    NoKeyScanError,
    NoMappingError,
    NoWorkloadsRun,
    PlanError,
    WaveError,
)
from domain.inventory_report import (
    CIS_FAIL,
    CIS_PASS,
    CIS_PASS_EXCEPTIONS,
    CIS_UNKNOWN,
    inventory_rows,
)
from domain.plan import Outcome, Plan
from domain.records import AccountInventory, Finding
from domain.runs import STAGE_RUN_KINDS, RunInfo
from domain.spec import MigrationSpec, scan_paths_of
from domain.waves import resolve_waves
from engine.migration import Migration
from engine.runs import view_runs
from state.identity import MappingInfo
from state.journal import FAILED
from state.store import Store


def inventory_report(
    mig: Migration,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[Finding]]:
    """Rows of the latest complete snapshot, its metadata, and the findings of its run."""
    spec, store = mig.spec, mig.store
    migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
    snapshot = store.snapshots.latest_snapshot(migration_id)
    if snapshot is None:
        raise NoInventoryError(
            f"no inventory yet for migration {spec.name!r}: run '{mig.hint('inventory')}'"
        )
    # The rows count users, classes and keys: the policy documents are not read.
    inventories = store.snapshots.load_snapshot(snapshot.id, policies=False)
    findings = store.snapshots.findings(run_id=snapshot.run_id)
    meta: dict[str, Any] = {
        "migration": spec.name,
        "snapshot_id": snapshot.id,
        "run_id": snapshot.run_id,
        "taken": snapshot.created.isoformat(),
    }
    # Where workload keys are used from (iamc workloads): evidence that a user is a service.
    placements = store.workloads.latest(migration_id)
    rows = inventory_rows(
        inventories, datetime.now(UTC), mig.spec.cis, placements, mig.spec.central_account
    )
    return rows, meta, findings


def latest_mapping(mig: Migration) -> tuple[MappingInfo, dict[str, Any], dict[str, Any]]:
    """The latest mapping for the report: the mapping, the IAM users' tags, and metadata.

    Returns:
        ``(mapping, tags, meta)``; ``tags`` is ``{(account_id, iam_user): {key: value}}`` from
        the inventory snapshot the mapping was computed from; ``meta`` holds the migration
        name, ids, the run's summary and findings.

    Raises:
        NoMappingError: No mapping run has succeeded yet.
    """
    spec, store = mig.spec, mig.store
    known = store.migrations.find_migration(spec.name)
    mapping = store.identity.latest_mapping(known) if known is not None else None
    if known is None or mapping is None:
        raise NoMappingError(f"no mapping yet for migration {spec.name!r}: run '{mig.hint('map')}'")
    tags = {
        (inventory.account.account_id, user.name): dict(user.tags)
        for inventory in store.snapshots.load_snapshot(mapping.snapshot_id)
        for user in inventory.users
    }
    run = store.runs.get_run(mapping.run_id)
    findings = store.snapshots.findings(run_id=mapping.run_id)
    meta = {
        "migration": spec.name,
        "mapping_id": mapping.id,
        "run_id": mapping.run_id,
        "snapshot_id": mapping.snapshot_id,
        "created": mapping.created.isoformat(),
        "summary": run.summary or {},
        "findings": findings,
        "tag_keys": [r[len("tag:") :] for r in spec.mapping.rules if r.startswith("tag:")],
    }
    return mapping, tags, meta


def plan_meta(info: Any) -> dict[str, Any]:
    return {
        "plan_id": info.id,
        "hash": info.hash,
        "created": info.created.isoformat(),
        "approvals": [
            {
                "stage": a.stage,
                "decision": a.decision,
                "approver": a.approver,
                "ticket": a.ticket,
                "comment": a.comment,
                "at": a.at.isoformat(),
            }
            for a in info.approvals
        ],
    }


def plan_runs(store: Store, migration_id: int, plan_id: int) -> list[dict[str, Any]]:
    """The apply and rollback runs of a plan, oldest first: what was done with it.

    Statuses are the lifecycle's (interrupted, superseded), as ``iamc runs`` shows them.
    """
    runs = store.runs.list_runs(migration_id)
    views = view_runs(runs, store.leases.list_stage_locks())
    return [
        {
            "id": run.id,
            "kind": run.kind,
            "stage": run.params.get("stage"),
            "status": views[run.id].status,
            "finished": run.finished.isoformat(timespec="seconds") if run.finished else None,
        }
        for run in runs
        if run.kind in STAGE_RUN_KINDS and run.params.get("plan_id") == plan_id
    ]


def load_plan(mig: Migration, plan_id: int) -> tuple[Plan, dict[str, Any]]:
    """A stored plan and its metadata (hash, approvals, its apply and rollback runs)."""
    info = get_plan_info(mig.store, mig.spec.name, plan_id)
    runs = plan_runs(mig.store, info.migration_id, plan_id)
    return Plan.from_content(info.content), {**plan_meta(info), "runs": runs}


def get_plan_info(store: Store, migration: str, plan_id: int) -> Any:
    """The stored plan ``plan_id`` of the migration called ``migration``.

    Raises:
        PlanError: No such plan in that migration.
    """
    info = store.plans.get_plan(plan_id)
    if info is None or info.migration != migration:
        raise PlanError(f"no plan {plan_id} in migration {migration!r}")
    return info


def key_scan_report(mig: Migration) -> dict[str, Any]:
    """What the key scans say now (as the plan reads it), for ``iamc report keys``.

    Returns:
        ``findings`` (current, per unit the latest scan that read it), ``problems`` (of the
        latest scan), ``unscanned`` (units no scan has read), ``roots`` ({label: path} of the
        spec's scan paths) and ``meta``.

    Raises:
        NoKeyScanError: No key scan has succeeded yet for the migration.
    """
    spec, store = mig.spec, mig.store
    known = store.migrations.find_migration(spec.name)
    latest = store.scans.latest_key_scan_run(known) if known is not None else None
    if known is None or latest is None:
        raise NoKeyScanError(
            f"no key scan yet for migration {spec.name!r}: run '{mig.hint('scan')}'"
        )
    findings, unscanned = store.scans.current_key_findings(known)
    problems = store.scans.key_scan_problems(latest)
    run = store.runs.get_run(latest)
    return {
        "findings": findings,
        "problems": problems,
        "unscanned": unscanned,
        "roots": {entry.label: entry.path for entry in scan_paths_of(spec, mig.spec_path)},
        "meta": {
            "migration": spec.name,
            "scan_run_id": latest,
            "scanned_at": run.started.isoformat(),
            "snapshot_id": (run.summary or {}).get("snapshot_id"),
        },
    }


def workloads_report(mig: Migration) -> dict[str, Any]:
    """Where each workload user's keys are used from, as stored, for ``iamc report workloads``.

    Returns:
        ``placements`` (``store.workloads.latest``: an account the latest run could not read
        keeps its earlier placements) and ``meta``: migration, ``run_id``, ``recorded`` and
        ``accounts_failed`` ({account: why} of the latest run).

    Raises:
        NoWorkloadsRun: No workloads run has succeeded yet for the migration.
    """
    spec, store = mig.spec, mig.store
    known = store.migrations.find_migration(spec.name)
    latest = store.workloads.latest_run(known) if known is not None else None
    if known is None or latest is None:
        raise NoWorkloadsRun(
            f"no workloads run yet for migration {spec.name!r}: run '{mig.hint('workloads')}'"
        )
    run = store.runs.get_run(latest)
    placements = store.workloads.latest(known)
    return {
        "placements": [placements[k] for k in sorted(placements)],
        "meta": {
            "migration": spec.name,
            "run_id": latest,
            "recorded": run.started.isoformat(),
            "accounts_failed": dict((run.summary or {}).get("accounts_failed") or {}),
        },
    }


# -- waves ---------------------------------------------------------------------------------------

WAVE_COLUMNS = [
    "wave",
    "accounts",
    "users",
    "to_migrate",
    "migrated",
    "disabled",
    "deleted",
    "cis_pass",
    "cis_fail",
    "cis_unknown",
    "plan",
    "pending",
]
NO_WAVES = "(scope)"  # the one implicit wave of a spec without [[waves]]


def _wave_accounts(
    spec: MigrationSpec, inventories: list[Any], plans: dict[str, Plan]
) -> tuple[dict[str, list[str]], str | None]:
    """Each wave's accounts: as its latest plan resolved them, else from the snapshot.

    A wave never planned that names a nested OU is placed by its accounts' direct parents
    only (the report reads no AWS); ``iamc plan --wave`` resolves it against the organization.
    """
    if not spec.waves:
        return {NO_WAVES: sorted(i.account.account_id for i in inventories)}, None
    chains = {
        i.account.account_id: [i.account.parent_id] if i.account.parent_id else []
        for i in inventories
    }
    try:
        resolved = resolve_waves(spec, chains)
        problem = None
    except WaveError as err:
        resolved, problem = {}, str(err)
    for name, plan in plans.items():
        if plan.wave:
            resolved[name] = list(plan.wave["accounts"])
    return resolved, problem


def _user_progress(plan: Plan, journal: dict[str, Any]) -> dict[str, int]:
    """Users migrated (all their assignments done), disabled and deleted, per the journal."""

    def done(action_id: str) -> bool:
        entry = journal.get(action_id)
        return entry is not None and entry.done

    quarantine = {
        (a.account_id, a.target): a for a in plan.actions if a.kind == "attach-quarantine-policy"
    }
    deleted_ids = {(a.account_id, a.target): a.id for a in plan.actions if a.kind == "delete-user"}
    provisioned = any(e.stage == "provision" and e.done for e in journal.values())
    counts = {"to_migrate": 0, "migrated": 0, "disabled": 0, "deleted": 0}
    for user in plan.users:
        key = (user.account_id, user.user)
        if user.outcome == Outcome.MIGRATE:
            counts["to_migrate"] += 1
            action = quarantine.get(key)
            prerequisites = action.depends_on if action else []
            if (prerequisites and all(done(p) for p in prerequisites)) or (
                not prerequisites and provisioned
            ):
                counts["migrated"] += 1
        if key in quarantine and done(quarantine[key].id):
            counts["disabled"] += 1
        if key in deleted_ids and done(deleted_ids[key]):
            counts["deleted"] += 1
    return counts


# What a wave's row says once a stage's latest run succeeded.
_STAGE_DONE = {"provision": "provisioned", "disable": "disabled", "delete": "deleted"}
_BEFORE_NEXT = {"delete": "after the bake period (the bake-watch table says who is ready), "}


def _approved_for(info: Any, stage: str) -> bool:
    """The plan's latest decision that covers ``stage`` approves it (for this plan's hash)."""
    covering = [
        a
        for a in info.approvals
        if a.stage in registry.authorised_by(stage) and a.plan_hash == info.hash
    ]
    return bool(covering) and covering[-1].decision == "approved"


def _stage_counts(plan: Plan | None, journal: dict[str, Any], stage: str) -> str:
    """``25 of 28 actions done, 3 failed``: the stage's actions, from the journal."""
    if plan is None:
        return "see its per-account table"
    actions = [a.id for a in plan.actions if a.stage == stage]
    done = sum(1 for a in actions if a in journal and journal[a].done)
    failed = sum(1 for a in actions if a in journal and journal[a].status == FAILED)
    pending = len(actions) - done - failed
    return f"{done} of {len(actions)} actions done, {failed} failed, {pending} pending"


def _after_stage_runs(
    plan_id: int,
    info: Any,
    last: Any,
    hint: Callable[[str], str],
    plan: Plan | None,
    journal: dict[str, Any],
) -> str:
    """What the wave waits for after its latest apply or rollback run of any stage."""
    run_id, stage = last.run.id, str(last.run.params.get("stage") or "")
    if last.status in ("failed", "interrupted"):
        return (
            f"{stage} run {run_id} {last.status}: {_stage_counts(plan, journal, stage)}; fix "
            f"the cause in its table, then press Retry on its flow run ({hint(f'resume {run_id}')})"
        )
    if last.status == "running":
        return f"{stage} run {run_id} is running: {_stage_counts(plan, journal, stage)}"
    if last.run.kind == "rollback":
        return f"{stage} rolled back by run {run_id}: re-plan or apply the stage again"
    done = f"{_STAGE_DONE.get(stage, stage + ' done')} (run {run_id})"
    names = registry.stage_names()
    later = names[names.index(stage) + 1 :] if stage in names else []
    if not later:
        return f"{done}: every stage of plan {plan_id} is done"
    upcoming = later[0]
    if _approved_for(info, upcoming):
        command = f"{hint(f'apply {plan_id}')} --stage {upcoming}"
        return f"{done}; next, {_BEFORE_NEXT.get(upcoming, '')}stage {upcoming}: {command}"
    command = f"{hint(f'approve {plan_id}')} --stage {upcoming}"
    return f"{done}; next: stage {upcoming} needs its approval: {command}"


def _pending(
    name: str,
    plan_id: int | None,
    info: Any,
    stage_runs: list[Any],
    hint: Callable[[str], str],
    plan: Plan | None = None,
    journal: dict[str, Any] | None = None,
) -> str:
    """What the wave waits for, in one line: the next command when there is one.

    ``stage_runs`` are the plan's apply and rollback runs of every stage, oldest first: the
    latest says where the wave is (a failed disable run is named with its counts, never
    passed over as "provisioned").
    """
    wave_option = f" --wave {name}" if name != NO_WAVES else ""
    if plan_id is None:
        return f"no plan: {hint('plan')}{wave_option}"
    if info.blocking:
        return f"plan {plan_id} has {info.blocking} blocking error(s): fix them and re-plan"
    if stage_runs:
        return _after_stage_runs(plan_id, info, stage_runs[-1], hint, plan, journal or {})
    if not _approved_for(info, "provision"):
        rejected = [a for a in info.approvals if a.decision == "rejected"]
        if rejected:
            return f"plan {plan_id} rejected by {rejected[-1].approver}: re-plan"
        return f"plan {plan_id} not approved: {hint(f'approve {plan_id}')} --stage provision"
    return f"plan {plan_id} approved, not applied: {hint(f'apply {plan_id}')}"


@dataclass(frozen=True)
class _WavesState:
    """What the waves report reads from the store: the snapshot, each wave's latest plan."""

    snapshot: Any
    inventories: list[AccountInventory]
    latest: dict[str, int]  # wave -> its latest plan id
    infos: dict[str, Any]
    plans: dict[str, Plan]
    journals: dict[str, dict[str, Any]]
    runs: list[RunInfo]
    views: dict[int, Any]


def _read_waves(
    mig: Migration,
    known_plans: dict[int, Plan] | None,
    known_snapshot: tuple[int, list[AccountInventory]] | None,
) -> _WavesState:
    spec, store = mig.spec, mig.store
    migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
    snapshot = store.snapshots.latest_snapshot(migration_id)
    if snapshot is None:
        raise NoInventoryError(
            f"no inventory yet for migration {spec.name!r}: run '{mig.hint('inventory')}'"
        )
    if known_snapshot is not None and known_snapshot[0] == snapshot.id:
        inventories = known_snapshot[1]
    else:
        inventories = store.snapshots.load_snapshot(snapshot.id)
    latest: dict[str, int] = {}
    for head in store.waves.plan_heads(migration_id):
        latest[head.wave or NO_WAVES] = head.id
    known = known_plans or {}
    infos = {
        name: store.plans.get_plan(plan_id, with_content=plan_id not in known)
        for name, plan_id in latest.items()
    }
    plans = {
        name: known[info.id] if info.id in known else Plan.from_content(info.content)
        for name, info in infos.items()
    }
    journals = {
        name: {e.action_id: e for e in store.journal.journal_entries(info.id)}
        for name, info in infos.items()
    }
    runs = store.runs.list_runs(migration_id)
    views = view_runs(runs, store.leases.list_stage_locks())
    return _WavesState(snapshot, inventories, latest, infos, plans, journals, runs, views)


def waves_report(
    mig: Migration,
    known_plans: dict[int, Plan] | None = None,
    known_snapshot: tuple[int, list[AccountInventory]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per wave: accounts, users migrated, disabled and deleted, CIS 1.21 verdicts, and what
    is pending; from the latest inventory and each wave's latest plan and its runs.

    Args:
        known_plans: plan id -> that stored plan, already in memory (the plan flow's own):
            not read back from the store.
        known_snapshot: (snapshot id, its inventories) already in memory: used if that
            snapshot is still the latest.

    Raises:
        NoInventoryError: No inventory yet.
    """
    spec = mig.spec
    read = _read_waves(mig, known_plans, known_snapshot)
    wave_names = [w.name for w in spec.waves] or [NO_WAVES]
    accounts_of, problem = _wave_accounts(spec, read.inventories, read.plans)
    rows_by_account = {
        r["account_id"]: r
        for r in inventory_rows(
            read.inventories,
            datetime.now(UTC),
            mig.spec.cis,
            _placements(mig),
            mig.spec.central_account,
        )
    }
    rows = []
    for name in wave_names:
        accounts = accounts_of.get(name, [])
        plan_id = read.latest.get(name)
        progress = {"to_migrate": 0, "migrated": 0, "disabled": 0, "deleted": 0}
        stage_runs = []
        if plan_id is not None:
            progress = _user_progress(read.plans[name], read.journals[name])
            stage_runs = [
                read.views[r.id]
                for r in read.runs
                if r.kind in STAGE_RUN_KINDS and r.params.get("plan_id") == plan_id
            ]
        pending = _pending(
            name,
            plan_id,
            read.infos.get(name),
            stage_runs,
            mig.hint,
            read.plans.get(name),
            read.journals.get(name),
        )
        if problem and name not in read.plans:
            pending = problem
        rows.append(
            {
                "wave": name,
                "accounts": len(accounts),
                "users": sum(rows_by_account[a]["users"] for a in accounts if a in rows_by_account),
                **progress,
                **_cis_counts(rows_by_account, accounts),
                "plan": plan_id,
                "pending": pending,
                "account_ids": accounts,
            }
        )
    meta = {
        "migration": spec.name,
        "snapshot_id": read.snapshot.id,
        "taken": read.snapshot.created.isoformat(),
    }
    return rows, meta


def _cis_counts(rows_by_account: dict[str, dict[str, Any]], accounts: list[str]) -> dict[str, int]:
    """The wave's accounts' CIS 1.21 verdicts, counted."""
    cis = [rows_by_account[a]["cis_1_21"] for a in accounts if a in rows_by_account]
    return {
        "cis_pass": cis.count(CIS_PASS) + cis.count(CIS_PASS_EXCEPTIONS),
        "cis_fail": cis.count(CIS_FAIL),
        "cis_unknown": cis.count(CIS_UNKNOWN),
    }


def _placements(mig: Migration) -> dict[tuple[str, str], Any]:
    """The latest workloads run's placements (empty before the migration or the first run)."""
    migration_id = mig.store.migrations.find_migration(mig.spec.name)
    return mig.store.workloads.latest(migration_id) if migration_id is not None else {}
