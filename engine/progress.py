"""Where a migration stands in its runbook, read from the state store.

The ``centralize`` flow continues at the first unfinished step from here, and the UI's tables
are built from it: the latest complete inventory, the mapping of that inventory, the plan made
from that mapping, its provision approval, its apply runs, and the verify and notify runs.
Read-only: no AWS, no Prefect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.runs import APPLY_RUN, NOTIFY_RUN, RUN_SUCCEEDED, VERIFY_RUN, RunInfo
from engine.migration import Migration
from engine.runs import view_runs


@dataclass(frozen=True)
class MigrationProgress:
    """What is finished, step by step; ids are None where a step has not happened yet.

    A step counts as finished only for the output of the step before it: a mapping of an
    older snapshot, or a plan of an older mapping, is not current.
    """

    migration: str
    migration_id: int | None = None
    snapshot_id: int | None = None
    inventory_run_id: int | None = None
    inventory_succeeded: bool = False
    mapping_run_id: int | None = None
    mapping_current: bool = False
    plan_id: int | None = None
    plan_hash: str | None = None
    plan_blocking: int = 0
    approval: dict[str, Any] | None = None  # the provision decision bound to the plan's hash
    apply_run_id: int | None = None  # the latest apply run of the plan's provision stage
    apply_status: str | None = None  # its lifecycle status (succeeded, failed, interrupted...)
    verify_run_id: int | None = None  # the latest succeeded verify run of the plan
    notify_run_id: int | None = None  # the latest succeeded notify run of the plan
    key_scan_run_id: int | None = None  # the latest succeeded key scan after the inventory
    # The latest succeeded workloads run after the inventory and the key scan.
    workloads_run_id: int | None = None
    # The latest succeeded usage run after the inventory.
    usage_run_id: int | None = None

    @property
    def inventory_done(self) -> bool:
        return self.snapshot_id is not None and self.inventory_succeeded

    @property
    def mapping_done(self) -> bool:
        return self.inventory_done and self.mapping_current

    @property
    def plan_done(self) -> bool:
        return self.mapping_done and self.plan_id is not None

    @property
    def provision_done(self) -> bool:
        return self.plan_done and self.apply_status == RUN_SUCCEEDED


def decision_record(approval: Any) -> dict[str, Any]:
    """A recorded decision as the status, the flows and their messages read it."""
    return {
        "stage": approval.stage,
        "decision": approval.decision,
        "approver": approval.approver,
        "ticket": approval.ticket,
        "comment": approval.comment,
        "at": approval.at.isoformat(timespec="seconds"),
    }


def _latest(runs: list[RunInfo], kind: str, **params: Any) -> RunInfo | None:
    matching = [
        r for r in runs if r.kind == kind and all(r.params.get(k) == v for k, v in params.items())
    ]
    return matching[-1] if matching else None


def _latest_succeeded(runs: list[RunInfo], kind: str, **params: Any) -> RunInfo | None:
    return _latest([r for r in runs if r.status == RUN_SUCCEEDED], kind, **params)


def migration_progress(mig: Migration) -> MigrationProgress:
    """Read where the spec's migration stands (see :class:`MigrationProgress`)."""
    spec, store = mig.spec, mig.store
    migration_id = store.migrations.find_migration(spec.name)
    if migration_id is None:
        return MigrationProgress(spec.name)
    runs = store.runs.list_runs(migration_id)
    snapshot = store.snapshots.latest_snapshot(migration_id)
    if snapshot is None:
        return MigrationProgress(spec.name, migration_id)
    inventory_run = store.runs.get_run(snapshot.run_id)
    mapping = store.identity.latest_mapping(migration_id)
    mapping_current = mapping is not None and mapping.snapshot_id == snapshot.id
    scanned = store.scans.latest_key_scan_run(migration_id)
    placed = store.workloads.latest_run(migration_id)
    found: dict[str, Any] = {
        "migration": spec.name,
        "migration_id": migration_id,
        "snapshot_id": snapshot.id,
        "inventory_run_id": snapshot.run_id,
        "inventory_succeeded": inventory_run.status == RUN_SUCCEEDED,
        "mapping_run_id": mapping.run_id if mapping else None,
        "mapping_current": mapping_current,
        "key_scan_run_id": scanned if scanned is not None and scanned > snapshot.run_id else None,
        "workloads_run_id": placed
        if placed is not None and placed > max(snapshot.run_id, scanned or 0)
        else None,
        "usage_run_id": read.id
        if (read := _latest_succeeded(runs, "usage")) is not None and read.id > snapshot.run_id
        else None,
    }
    if not mapping_current or mapping is None:
        return MigrationProgress(**found)
    plan_runs = [
        r
        for r in runs
        if r.kind == "plan"
        and r.status == RUN_SUCCEEDED
        and r.id > mapping.run_id
        and (r.summary or {}).get("plan_id") is not None
    ]
    if not plan_runs:
        return MigrationProgress(**found)
    plan_id = int(plan_runs[-1].summary["plan_id"])  # type: ignore[index]
    info = store.plans.get_plan(plan_id)
    if info is None:
        return MigrationProgress(**found)
    decisions = [
        a for a in info.approvals if a.stage in ("provision", "all") and a.plan_hash == info.hash
    ]
    approval = decision_record(decisions[-1]) if decisions else None
    apply_run = _latest(runs, APPLY_RUN, plan_id=plan_id, stage="provision")
    apply_status = None
    if apply_run is not None:
        apply_status = view_runs(runs, store.leases.list_stage_locks())[apply_run.id].status
    verify_run = _latest_succeeded(runs, VERIFY_RUN, plan_id=plan_id)
    notify_run = _latest_succeeded(runs, NOTIFY_RUN, plan_id=plan_id)
    return MigrationProgress(
        **found,
        plan_id=plan_id,
        plan_hash=info.hash,
        plan_blocking=info.blocking,
        approval=approval,
        apply_run_id=apply_run.id if apply_run else None,
        apply_status=apply_status,
        verify_run_id=verify_run.id if verify_run else None,
        notify_run_id=notify_run.id if notify_run else None,
    )


def latest_plan_id(mig: Migration) -> int | None:
    """The migration's most recently stored plan, or None when it has none yet."""
    migration_id = mig.store.migrations.find_migration(mig.spec.name)
    return None if migration_id is None else mig.store.plans.latest_plan_id(migration_id)


def run_of_flow_run(mig: Migration, kind: str, flow_run_id: str) -> int | None:
    """The state-store run of ``kind`` that a Prefect flow run recorded, if any."""
    migration_id = mig.store.migrations.find_migration(mig.spec.name)
    if migration_id is None:
        return None
    runs = mig.store.runs.list_runs(migration_id)
    found = _latest(runs, kind, prefect_flow_run_id=str(flow_run_id))
    return found.id if found else None


def account_names(mig: Migration) -> dict[str, str]:
    """Account id -> name, as the latest complete inventory saw them ({} before one)."""
    store = mig.store
    migration_id = store.migrations.find_migration(mig.spec.name)
    snapshot = store.snapshots.latest_snapshot(migration_id) if migration_id is not None else None
    return {} if snapshot is None else store.snapshots.account_names(snapshot.id)
