"""Rehearsal plans: a provision-only plan stored straight from permission sets and assignments.

Tests and benchmarks of the provision stage need an approved plan without running inventory and
mapping against an organization first; this builds one through the real planner and store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domain.access import (
    AssignmentDefinition,
    PermissionSetDefinition,
    RequiredPolicy,
    SynthesisResult,
)
from domain.deletion import deletes_in
from domain.planning import build_plan
from domain.records import AccountInventory, Finding, UserMapping
from domain.workloads import Placement
from engine.approvals import record_decision
from engine.migration import Migration
from state import Store


def store_provision_plan(
    spec_path: Path,
    state_url: str,
    migration: str,
    permission_sets: list[PermissionSetDefinition],
    assignments: list[AssignmentDefinition],
    required_customer_policies: list[RequiredPolicy] | None = None,
    approve_stage: str | None = "provision",
    approver: str = "rehearsal",
) -> int:
    """Store a plan (after an empty, complete inventory snapshot) and approve it if asked.

    Returns:
        The plan's id.
    """
    synthesis = SynthesisResult(
        permission_sets=permission_sets,
        assignments=assignments,
        required_customer_policies=required_customer_policies or [],
    )
    with Store.open(state_url) as store:
        migration_id = store.migrations.ensure_migration(migration, {})
        run = store.runs.start_run(migration_id, "inventory")
        snapshot = store.snapshots.new_snapshot(migration_id, run)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        plan = build_plan(
            migration=migration,
            inventory_snapshot_id=snapshot,
            mapping_run_id=None,
            inventories=[],
            user_mappings=[],
            group_mappings=[],
            synthesis=synthesis,
            settings={},
        )
        plan_run = store.runs.start_run(migration_id, "plan")
        plan_id, _ = store.plans.save_plan(
            migration_id, plan_run, plan.content_hash(), plan.content(), len(plan.blocking)
        )
        store.runs.finish_run(plan_run, "succeeded")
    if approve_stage:
        with Migration.open(spec_path) as mig:
            record_decision(
                mig,
                plan_id,
                approver=approver,
                ticket="REHEARSAL-1",
                stage=approve_stage,
                expected_hash=plan.content_hash(),
            )
    return plan_id


def store_retire_plan(
    spec_path: Path,
    state_url: str,
    migration: str,
    inventories: list[AccountInventory],
    *,
    approve_stages: tuple[str, ...] = ("all", "delete"),
    approver: str = "rehearsal",
    bake_days: int = 14,
    extra_findings: list[Finding] | None = None,
    user_mappings: list[UserMapping] | None = None,
    synthesis: SynthesisResult | None = None,
    workloads: dict[tuple[str, str], Placement] | None = None,
    settings: dict[str, Any] | None = None,
) -> int:
    """Store a plan that disables and deletes the given inventories' unused users (and, with
    ``user_mappings`` and ``synthesis``, migrates the mapped humans before disabling them).

    The inventories are stored as the plan's (complete) snapshot, so the plan is current.
    Each of ``approve_stages`` is approved in turn; delete on its own, quoting the number of
    users it deletes (an approval of "all" never covers delete).

    Returns:
        The plan's id.
    """
    with Store.open(state_url) as store:
        migration_id = store.migrations.ensure_migration(migration, {})
        run = store.runs.start_run(migration_id, "inventory")
        snapshot = store.snapshots.new_snapshot(migration_id, run)
        for inventory in inventories:
            store.snapshots.save_account_inventory(snapshot, inventory)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        plan = build_plan(
            migration=migration,
            inventory_snapshot_id=snapshot,
            mapping_run_id=None,
            inventories=inventories,
            user_mappings=user_mappings or [],
            group_mappings=[],
            synthesis=synthesis or SynthesisResult(),
            # ``settings``: more of the spec's, e.g. its permissions boundary.
            settings={"bake_days": bake_days, **(settings or {})},
            extra_findings=extra_findings,
            workloads=workloads,
        )
        plan_run = store.runs.start_run(migration_id, "plan")
        plan_id, _ = store.plans.save_plan(
            migration_id, plan_run, plan.content_hash(), plan.content(), len(plan.blocking)
        )
        store.runs.finish_run(plan_run, "succeeded")
    with Migration.open(spec_path) as mig:
        for stage in approve_stages:
            record_decision(
                mig,
                plan_id,
                approver=approver,
                ticket="REHEARSAL-2",
                stage=stage,
                expected_hash=plan.content_hash(),
                deletes=deletes_in(plan) if stage == "delete" else None,
            )
    return plan_id
