"""What the stored state says, for people: the latest inventory report, mapping and a plan.

Read-only: these open the migration's store, read, and close it; no AWS, no Prefect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.errors import NoInventoryError, NoKeyScanError, NoMappingError, PlanError
from domain.inventory_report import inventory_rows
from domain.plan import Plan
from domain.records import Finding
from domain.spec import MigrationSpec, load_spec
from state.identity import MappingInfo
from state.runs import STAGE_RUN_KINDS, view_runs
from state.store import Store


def inventory_report(
    spec_path: str | Path,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[Finding]]:
    """Rows of the latest complete snapshot, its metadata, and the findings of its run."""
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        migration_id = store.ensure_migration(spec.name, spec.model_dump(mode="json"))
        snapshot = store.latest_snapshot(migration_id)
        if snapshot is None:
            raise NoInventoryError(
                f"no inventory yet for migration {spec.name!r}: run 'iamc inventory -c {spec_path}'"
            )
        inventories = store.load_snapshot(snapshot.id)
        findings = store.findings(run_id=snapshot.run_id)
    meta: dict[str, Any] = {
        "migration": spec.name,
        "snapshot_id": snapshot.id,
        "run_id": snapshot.run_id,
        "taken": snapshot.created.isoformat(),
    }
    return inventory_rows(inventories, datetime.now(UTC)), meta, findings


def latest_mapping(spec_path: str | Path) -> tuple[MappingInfo, dict[str, Any], dict[str, Any]]:
    """The latest mapping for the report: the mapping, the IAM users' tags, and metadata.

    Returns:
        ``(mapping, tags, meta)``; ``tags`` is ``{(account_id, iam_user): {key: value}}`` from
        the inventory snapshot the mapping was computed from; ``meta`` holds the migration
        name, ids, the run's summary and findings.

    Raises:
        NoMappingError: No mapping run has succeeded yet.
    """
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        known = store.find_migration(spec.name)
        mapping = store.latest_mapping(known) if known is not None else None
        if known is None or mapping is None:
            raise NoMappingError(
                f"no mapping yet for migration {spec.name!r}: run 'iamc map -c {spec_path}'"
            )
        tags = {
            (inventory.account.account_id, user.name): dict(user.tags)
            for inventory in store.load_snapshot(mapping.snapshot_id)
            for user in inventory.users
        }
        run = store.get_run(mapping.run_id)
        findings = store.findings(run_id=mapping.run_id)
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
    runs = store.list_runs(migration_id)
    views = view_runs(runs, store.list_stage_locks())
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


def load_plan(spec_path: str | Path, plan_id: int) -> tuple[Plan, dict[str, Any]]:
    """A stored plan and its metadata (hash, approvals, its apply and rollback runs)."""
    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        info = get_plan_info(store, spec, plan_id)
        runs = plan_runs(store, info.migration_id, plan_id)
    return Plan.from_content(info.content), {**plan_meta(info), "runs": runs}


def get_plan_info(store: Store, spec: MigrationSpec, plan_id: int) -> Any:
    info = store.get_plan(plan_id)
    if info is None or info.migration != spec.name:
        raise PlanError(f"no plan {plan_id} in migration {spec.name!r}")
    return info


def key_scan_report(spec_path: str | Path) -> dict[str, Any]:
    """What the key scans say now (as the plan reads it), for ``iamc report keys``.

    Returns:
        ``findings`` (current, per unit the latest scan that read it), ``problems`` (of the
        latest scan), ``unscanned`` (units no scan has read), ``roots`` ({label: path} of the
        spec's scan paths) and ``meta``.

    Raises:
        NoKeyScanError: No key scan has succeeded yet for the migration.
    """
    from domain.spec import scan_paths_of

    spec = load_spec(spec_path)
    with Store.open(spec.state) as store:
        known = store.find_migration(spec.name)
        latest = store.latest_key_scan_run(known) if known is not None else None
        if known is None or latest is None:
            raise NoKeyScanError(
                f"no key scan yet for migration {spec.name!r}: run 'iamc scan -c {spec_path}'"
            )
        findings, unscanned = store.current_key_findings(known)
        problems = store.key_scan_problems(latest)
        run = store.get_run(latest)
    return {
        "findings": findings,
        "problems": problems,
        "unscanned": unscanned,
        "roots": {entry.label: entry.path for entry in scan_paths_of(spec, spec_path)},
        "meta": {
            "migration": spec.name,
            "scan_run_id": latest,
            "scanned_at": run.started.isoformat(),
            "snapshot_id": (run.summary or {}).get("snapshot_id"),
        },
    }
