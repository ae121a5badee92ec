"""Runbook step 6: compute the dry-run plan, and record a change board's approval of it."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from console.approval import ApprovalInput, request_approval
from console.operator import artifact_key, operator_step
from console.run_names import step_run_name
from console.waves import publish_waves_artifact
from domain.access import KnownPermissionSet
from domain.central_spec import CENTRAL_ROLES
from domain.distribution import work_pool
from domain.errors import PlanError
from domain.key_risks import add_hard_coded_key_risks
from domain.plan import PROVENANCE_KEYS, Plan, Stage, hashed_content, sha256_of
from domain.plan_render import (
    artifact_markdown,
    render_assignments_csv,
    render_json_bytes,
    render_markdown,
)
from domain.planning import build_plan, unseen_account_findings
from domain.progress import emit
from domain.records import AccountInventory
from domain.spec import MigrationSpec
from domain.synthesis import synthesize
from domain.usage import UsageRead
from domain.waves import (
    OrgPermissionSet,
    central_accesses,
    central_role_accounts,
    central_role_principals,
    names_only_accounts,
    organization_sets,
    resolve_waves,
)
from engine.migration import Migration, require_shared_state
from engine.reports import plan_meta
from state import SnapshotInfo, Store
from state.identity import MappingInfo
from tasks.aws import AwsSessions
from tasks.organizations import account_ancestors

log = logging.getLogger(__name__)

__all__ = ["ApprovalInput", "compute_plan", "plan_and_approve", "plan_flow", "write_plan_files"]


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Planning allocates millions of small objects that live until the plan is written:
    CPython's cycle collector re-scans them all at every generation-2 pass, which cost half
    of a 10,000-user plan's time. Reference counting still frees everything as usual; cycles
    made meanwhile are collected once the collector is back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Phases:
    """Times consecutive phases of planning and tells listeners (``make bench``) each one."""

    def __init__(self) -> None:
        self._last = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        emit("plan-phase", phase=name, seconds=now - self._last)
        self._last = now


def _plan_settings(spec: MigrationSpec) -> dict[str, Any]:
    return {
        "inactive_days": spec.decommission.inactive_days,
        "bake_days": spec.decommission.bake_days,
        "protected_users": list(spec.protected_users),
        "protected_tag": spec.protected_tag,
        # Only with a boundary, so plans of a spec without one keep their content (and hash).
        **(
            {"permissions_boundary": spec.permission_sets.boundary_reference()}
            if spec.permission_sets.boundary
            else {}
        ),
        # Only for central-roles, so Identity Center plans keep their content (and hash).
        **(
            {"target": CENTRAL_ROLES, "central": spec.central.model_dump()}
            if spec.target == CENTRAL_ROLES and spec.central is not None
            else {}
        ),
    }


def wave_accounts(spec: MigrationSpec, inventories: list[AccountInventory]) -> dict[str, list[str]]:
    """Every wave's accounts, checked: the organization is read only when a wave names an OU."""
    account_ids = [i.account.account_id for i in inventories]
    if names_only_accounts(spec):
        return resolve_waves(spec, {a: [] for a in account_ids})
    session = AwsSessions.from_spec(spec).management()
    named = {s for w in spec.waves for s in [*w.include_accounts, *w.exclude_accounts]}
    chains, nodes = account_ancestors(session, account_ids, sorted(named))
    return resolve_waves(spec, chains, nodes)


def organization_notes(store: Store, migration_id: int) -> dict[str, str]:
    """Set name -> who created it, for the change board (not part of the plan or its hash)."""
    return {
        known.name: f"exists: created by {known.created_by}" if known.ours else "exists: adopted"
        for known in organization_sets(store.waves.journal_uses(migration_id)).values()
    }


def known_permission_sets(
    organization: dict[str, OrgPermissionSet],
) -> dict[str, KnownPermissionSet]:
    """What synthesis keeps of the organization's sets: the name and document of each access;
    a set this migration did not create (adopted) keeps its whole definition: never changed."""
    return {
        fp: KnownPermissionSet(
            name=known.name,
            inline_policy=known.definition.get("inline_policy"),
            description=None if known.ours else known.definition.get("description"),
            session_duration=None if known.ours else known.definition.get("session_duration"),
        )
        for fp, known in organization.items()
    }


def _synthesis_options(
    spec: MigrationSpec,
    organization: dict[str, OrgPermissionSet],
    snapshot_inventories: list[AccountInventory],
    usage: UsageRead | None,
) -> dict[str, Any]:
    """How synthesis defines the sets: the spec's [permission_sets] and [least_privilege],
    what the organization has from earlier waves, the whole snapshot and the usage read."""
    return {
        "session_duration": spec.permission_sets.session_duration,
        "name_prefix": spec.permission_sets.name_prefix,
        "known": known_permission_sets(organization),
        "provisioned": {fp: list(known.accounts) for fp, known in organization.items()},
        "policy_inventories": snapshot_inventories,
        "boundary": spec.permission_sets.boundary_reference(),
        "usage": usage,
        "least_privilege_mode": spec.least_privilege.mode,
        "window_days": spec.least_privilege.window_days,
    }


@task(name="compute-plan", cache_policy=NO_CACHE, persist_result=False)
def compute_plan(
    spec: MigrationSpec, store: Store, migration_id: int, wave_name: str | None = None
) -> tuple[Plan, list[AccountInventory]]:
    """The plan, and the whole inventory snapshot it was computed from (every wave's accounts:
    the waves table reads it too, and a 10,000-user snapshot takes ~0.5 s to load again)."""
    wave = spec.wave(wave_name)
    phases = _Phases()
    snapshot, mapping = _latest_snapshot_and_mapping(spec, store, migration_id)
    inventories = snapshot_inventories = store.snapshots.load_snapshot(snapshot.id)
    user_mappings, group_mappings = mapping.user_mappings, mapping.group_mappings
    wave_info = None
    if wave is not None:
        # Inventory and mapping cover the whole scope; the plan covers the wave's accounts.
        accounts = set(wave_accounts(spec, inventories)[wave.name])
        inventories = [i for i in inventories if i.account.account_id in accounts]
        user_mappings = [m for m in user_mappings if m.account_id in accounts]
        group_mappings = [m for m in group_mappings if m.account_id in accounts]
        wave_info = {"name": wave.name, "accounts": sorted(accounts)}
    unseen = unseen_account_findings(
        inventories, _unread_reasons(store, snapshot.run_id), spec.scope.exclude_accounts
    )
    # The organization's permission sets, as every earlier plan's journal left them.
    uses = store.waves.journal_uses(migration_id)
    organization = organization_sets(uses)
    # central-roles: the accesses earlier plans made member roles of (their names and
    # documents kept), and where, so each access's central policy covers every wave.
    earlier_roles = central_role_accounts(uses) if spec.target == CENTRAL_ROLES else None
    # ... and whom their member roles trust: a later plan keeps them (its put replaces the
    # whole trust; people already migrated and disabled are no longer planned).
    earlier_principals = central_role_principals(uses) if spec.target == CENTRAL_ROLES else None
    known = central_accesses(uses) if spec.target == CENTRAL_ROLES else organization
    # What each user used in the window (``iamc usage``): the least privilege report, and in
    # trim mode the sets themselves. None: no read yet, the plan copies access as it is.
    usage = store.usage.latest(migration_id)
    phases.done("load inventory")
    synthesis = synthesize(
        inventories,
        user_mappings,
        group_mappings,
        mapping.identity_groups,
        **_synthesis_options(spec, known, snapshot_inventories, usage),
    )
    phases.done("synthesize")
    plan = build_plan(
        migration=spec.name,
        inventory_snapshot_id=snapshot.id,
        mapping_run_id=mapping.run_id,
        inventories=inventories,
        user_mappings=user_mappings,
        group_mappings=group_mappings,
        synthesis=synthesis,
        settings=_plan_settings(spec),
        extra_findings=unseen,
        wave=wave_info,
        organization=organization,
        # Where each workload user's key is used from (the workloads step): the replace
        # stage's inputs. None yet: every workload user is skipped, with the why.
        workloads=store.workloads.latest(migration_id),
        management_account_id=snapshot.management_account_id,
        caller_account_id=snapshot.caller_account_id,
        usage_read_id=usage.id if usage is not None else None,
        earlier_roles=earlier_roles,
        earlier_principals=earlier_principals,
    )
    # Runbook step 4: keys the scans found written down hold their users' disable and delete.
    found, unscanned = store.scans.current_key_findings(migration_id)
    add_hard_coded_key_risks(
        plan, inventories, found, store.scans.key_acceptances(migration_id), unscanned
    )
    phases.done("build actions")
    return plan, snapshot_inventories


def _latest_snapshot_and_mapping(
    spec: MigrationSpec, store: Store, migration_id: int
) -> tuple[SnapshotInfo, MappingInfo]:
    """The latest inventory snapshot and the mapping computed from it, or why there is none."""
    snapshot = store.snapshots.latest_snapshot(migration_id)
    if snapshot is None:
        raise PlanError(f"no inventory yet for migration {spec.name!r}: run 'iamc inventory'")
    mapping = store.identity.latest_mapping(migration_id)
    if mapping is None:
        raise PlanError(f"no identity mapping yet for migration {spec.name!r}: run 'iamc map'")
    if mapping.snapshot_id != snapshot.id:
        raise PlanError(
            f"the latest mapping (run {mapping.run_id}) was computed from inventory snapshot "
            f"{mapping.snapshot_id}, but the latest inventory is snapshot {snapshot.id}: "
            "run 'iamc map' again so the plan reads one consistent picture"
        )
    return snapshot, mapping


def _unread_reasons(store: Store, run_id: int) -> dict[str, str]:
    """Why each unread account failed, as the inventory run filed it (unreachable, denied...)."""
    return {
        f.account_id: str(f.details.get("reason") or f.kind)
        for f in store.snapshots.findings(run_id=run_id)
        if f.severity == "error" and f.account_id
    }


def _summary(plan: Plan) -> dict[str, Any]:
    from collections import Counter

    return {
        "users": len(plan.users),
        "outcomes": dict(sorted(Counter(str(u.outcome) for u in plan.users).items())),
        "permission_sets": len(plan.permission_sets),
        "permission_set_updates": sum(1 for a in plan.actions if a.kind == "update-permission-set"),
        "assignments": len(plan.assignments),
        "actions": dict(sorted(Counter(str(a.stage) for a in plan.actions).items())),
        "irreversible": sum(1 for a in plan.actions if a.irreversible),
        # The central-roles target's: roles in member accounts, the central side's actions.
        "target": plan.settings.get("target", "identity-center"),
        "member_roles": sum(1 for a in plan.actions if a.kind == "create-member-role"),
        "central_actions": sum(
            1
            for a in plan.actions
            if a.kind in ("create-access-group", "put-access-policy", "add-group-member")
        ),
        "blocking": len(plan.blocking),
        "blocking_provision": len(plan.blocking_for("provision")),
    }


def write_plan_files(
    plan: Plan,
    meta: dict[str, Any],
    out_dir: Path,
    *,
    content: dict[str, Any] | None = None,
    markdown: str | None = None,
) -> dict[str, str]:
    """Write plan.md, plan.json and assignments.csv; ``content`` and ``markdown`` if the
    caller has them already (a 10,000-user plan is not built or rendered twice)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": out_dir / "plan.md",
        "json": out_dir / "plan.json",
        "assignments": out_dir / "assignments.csv",
    }
    if markdown is None:
        markdown = render_markdown(plan, meta)
    files["markdown"].write_text(markdown, encoding="utf-8")
    with files["json"].open("wb") as out:
        out.write(render_json_bytes(plan, meta, content))
        out.write(b"\n")
    files["assignments"].write_text(render_assignments_csv(plan), encoding="utf-8")
    return {kind: str(path) for kind, path in files.items()}


@flow(name="plan", flow_run_name=step_run_name("plan"), log_prints=False, persist_result=False)
@operator_step("plan")
def plan_flow(
    spec_path: str, out_dir: str | None = None, wave: str | None = None
) -> dict[str, Any]:
    """Compute the plan from the latest inventory and mapping, store it, write its files.

    Args:
        spec_path: The migration spec (TOML).
        out_dir: Where to write plan.md, plan.json and assignments.csv.
        wave: The wave to plan, when the spec has ``[[waves]]`` (required then).
    """
    spec = Migration.spec_of(spec_path)
    spec.wave(wave)  # an unknown wave is refused before a run is recorded
    with _without_cyclic_gc():
        # The plan is freed (reference counts) when this returns, before the collector is
        # back on: it then has a small heap to scan, not the plan's millions of objects.
        return _plan_flow(spec, spec_path, out_dir, wave)


def _plan_flow(
    spec: MigrationSpec, spec_path: str, out_dir: str | None, wave: str | None
) -> dict[str, Any]:
    # On a work pool, only a state its workers share (engine.migration.Migration.open).
    require_shared_state(spec_path, spec.state, work_pool())
    with Store.open(spec.state) as store:
        migration_id = store.migrations.ensure_migration(spec.name, spec.model_dump(mode="json"))
        run_id = store.runs.start_run(migration_id, "plan", {"spec": spec_path, "wave": wave})
        try:
            summary, files, plan_id, plan, inventories = _plan_and_write(
                spec, spec_path, store, migration_id, run_id, wave, out_dir
            )
        except BaseException as err:
            store.runs.finish_run(run_id, "failed", error=str(err) or type(err).__name__)
            raise
        store.runs.finish_run(run_id, "succeeded", summary=summary)
    phases = _Phases()
    publish_waves_artifact(spec_path, {plan_id: plan}, (plan.inventory_snapshot_id, inventories))
    phases.done("waves artifact")
    return {**summary, "files": files}


def _plan_and_write(
    spec: MigrationSpec,
    spec_path: str,
    store: Store,
    migration_id: int,
    run_id: int,
    wave: str | None,
    out_dir: str | None,
) -> tuple[dict[str, Any], dict[str, str], int, Plan, list[AccountInventory]]:
    """Compute, store and write the plan: (summary, files, plan id, the stored plan, the
    inventory snapshot it was computed from)."""
    plan, inventories = compute_plan(spec, store, migration_id, wave)
    phases = _Phases()
    # The content is built once: hashed, stored and rendered from the same dict.
    content = plan.content()
    content_hash = sha256_of(hashed_content(content))
    phases.done("hash")
    # Same content, same plan: an identical plan is reused with its id and approvals,
    # whatever snapshot or mapping run it was recomputed from (see PLAN_FORMAT).
    plan_id, reused = store.plans.save_plan(
        migration_id, run_id, content_hash, content, len(plan.blocking), wave
    )
    info = store.plans.get_plan(plan_id, with_content=False)
    assert info is not None
    meta = {**plan_meta(info), "organization_sets": organization_notes(store, migration_id)}
    if reused:
        # Its files show the stored plan, as approved, byte for byte: the same hash
        # means the same content but for where it was computed from (PROVENANCE_KEYS),
        # which is taken from the stored plan rather than decoding all of it again.
        # Only the keys this content has: one computed without usage has no usage_read_id.
        keys = tuple(k for k in PROVENANCE_KEYS if k in content)
        provenance = store.plans.plan_provenance(plan_id, keys)
        content = {**content, **provenance}
        for key, value in provenance.items():
            setattr(plan, key, value)
    phases.done("store")
    target = Path(out_dir) if out_dir else Path(spec_path).parent / "plans" / str(plan_id)
    markdown = render_markdown(plan, meta)
    files = write_plan_files(plan, meta, target, content=content, markdown=markdown)
    del content
    phases.done("render")
    create_markdown_artifact(
        key=artifact_key(spec.name, "plan", wave),
        markdown=artifact_markdown(markdown, files["markdown"], plan_id),
        description=f"Plan {plan_id} of {spec.name}, hash {content_hash[:12]}",
    )
    summary = {
        "plan_id": plan_id,
        "wave": wave,
        "hash": content_hash,
        "reused": reused,
        "computed": meta["created"],
        "approvals": meta["approvals"],
        **_summary(plan),
    }
    phases.done("artifact")
    return summary, files, plan_id, plan, inventories


@flow(
    name="plan-and-approve",
    flow_run_name=step_run_name("plan-and-approve"),
    log_prints=False,
    persist_result=False,
)
@operator_step("plan-and-approve")
def plan_and_approve(
    spec_path: str,
    plan_id: int | None = None,
    timeout_seconds: int = 7 * 24 * 3600,
    wave: str | None = None,
    stage: Stage = Stage.PROVISION,
) -> dict[str, Any]:
    """Compute (or take) a plan, publish it as a Markdown artifact, and wait for a decision.

    The run pauses until someone resumes it from the UI (or ``resume_flow_run``) with an
    ``ApprovalInput`` (``console.approval``); the decision is recorded like ``iamc approve``.

    Args:
        spec_path: The migration spec (TOML).
        plan_id: The plan to decide on; empty: compute the plan now.
        timeout_seconds: How long the run waits for a decision before it fails.
        wave: The wave to plan when the spec has ``[[waves]]``.
        stage: The stage to be decided on: the form's stage starts at it (delete is never
            preset: the reviewer chooses it, quoting the users it deletes).
    """
    if plan_id is None:
        plan_id = plan_flow(spec_path, wave=wave)["plan_id"]
    return request_approval(spec_path, plan_id, timeout_seconds, str(stage))
