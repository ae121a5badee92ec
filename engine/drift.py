"""Drift: read what the migration created or adopted against AWS, and store the plan that puts
it back (``flows/drift.py`` runs it, one task per account).

What is ours is the provision stage's journal (``domain.waves.owned``, shared with the
Terraform export); what it should be is the latest definition a plan created or updated it
with. The sets are read once, in the management account; each account then on its own
(provisioning status, assignments), so one that can't be read is named and the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from domain.drift import (
    DriftFinding,
    DriftRead,
    account_findings,
    drift_markdown,
    drift_plan,
    set_findings,
)
from domain.errors import NoInventoryError, NothingToCompare
from domain.plan import Plan, hashed_content, sha256_of
from domain.waves import Owned, owned
from engine.migration import Migration
from engine.reports import plan_meta
from tasks.assignments import assignments_of
from tasks.handler import ExecutionContext
from tasks.permission_sets import (
    permission_set_names,
    provisioning_in_account,
    read_permission_set,
)

log = logging.getLogger(__name__)


@dataclass
class SetsRead:
    """The management account's part of a drift read."""

    findings: list[DriftFinding]
    changed: dict[str, dict[str, Any]]  # set name -> its live definition
    arns: dict[str, str]  # set name -> ARN, of the sets of ours that exist


def what_we_own(mig: Migration) -> tuple[int, Owned]:
    """The migration's id and what its provision stage created or adopted.

    Raises:
        NothingToCompare: The migration has applied nothing yet (exit 2).
    """
    migration_id = mig.store.migrations.find_migration(mig.spec.name)
    ours = owned([] if migration_id is None else mig.store.waves.journal_uses(migration_id))
    if migration_id is None or not ours:
        raise NothingToCompare(
            f"migration {mig.spec.name!r} has applied nothing yet, so nothing can have "
            f"drifted: run `{mig.hint('apply PLAN_ID --stage provision')}` first"
        )
    return migration_id, ours


def read_sets(ctx: ExecutionContext, ours: Owned) -> SetsRead:
    """Every set of ours, live, against its recorded definition."""
    sso, instance = ctx.sso(), ctx.instance.instance_arn
    names = permission_set_names(sso, instance)
    arns = {name: names[name] for name in ours.sets if name in names}
    live = {name: read_permission_set(sso, instance, arn) for name, arn in arns.items()}
    findings, changed = set_findings(ours, {name: live.get(name) for name in ours.sets})
    return SetsRead(findings, changed, arns)


def read_account(
    ctx: ExecutionContext, ours: Owned, account_id: str, arns: dict[str, str]
) -> list[DriftFinding]:
    """One account: each set of ours provisioned there as it is now, each assignment present.

    The member role is assumed first, so an account the tool can no longer reach fails as
    such (its reason named) rather than passing as read.
    """
    if ctx.reach is not None:
        ctx.reach(account_id)
    provisioned, stale = provisioning_in_account(ctx, account_id)
    wanted = {key[1] for key in ours.assignments if key[0] == account_id and key[1] in arns}
    live = assignments_of(ctx, ((account_id, arns[name]) for name in wanted))
    assigned = {name: live[(account_id, arns[name])] for name in wanted}
    return account_findings(ours, account_id, arns, provisioned, stale, assigned)


@dataclass
class StoredDriftPlan:
    """A drift plan as stored, with what its files are written from."""

    plan_id: int
    hash: str
    plan: Plan
    meta: dict[str, Any]
    content: dict[str, Any]
    markdown: str


def store_drift_plan(
    mig: Migration, run_id: int, migration_id: int, ours: Owned, read: DriftRead
) -> StoredDriftPlan | None:
    """Store the plan that puts the drift back; None when nothing drifted (nothing stored).

    Raises:
        NoInventoryError: The migration has no inventory snapshot (a plan names one).
    """
    snapshot = mig.store.snapshots.latest_snapshot(migration_id)
    if snapshot is None:
        raise NoInventoryError(
            f"no inventory yet for migration {mig.spec.name!r}: run '{mig.hint('inventory')}'"
        )
    plan = drift_plan(mig.spec.name, snapshot.id, ours, read)
    if plan is None:
        return None
    content = plan.content()
    content_hash = sha256_of(hashed_content(content))
    # Stored without a wave: a drift plan is no wave's plan (and not found as one).
    plan_id, _ = mig.store.plans.save_plan(migration_id, run_id, content_hash, content, 0, None)
    info = mig.store.plans.get_plan(plan_id, with_content=False)
    assert info is not None
    meta = plan_meta(info)
    return StoredDriftPlan(
        plan_id,
        content_hash,
        plan,
        meta,
        content,
        drift_markdown(read, plan_id, content_hash, plan),
    )
