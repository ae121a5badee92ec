"""An approver's acceptance of a user's hard-coded keys (``iamc scan accept``), recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.errors import PlanError
from domain.key_attribution import KeyAcceptance, inventory_index
from engine.migration import Migration


def accept_hard_coded_keys(
    mig: Migration, account_id: str, user: str, *, approver: str, reason: str
) -> KeyAcceptance:
    """Record that a user's hard-coded keys, as the current scans find them, need not hold its
    disable and delete (``iamc scan accept``). The next plan shows it as an accepted risk.

    Raises:
        PlanError: no approver or reason; no scan or inventory yet; the current scans find no
            key of that user written down.
    """
    if not approver.strip() or not reason.strip():
        raise PlanError("an acceptance needs both --by (who) and --reason (why it is safe)")
    spec, store = mig.spec, mig.store
    migration_id = store.migrations.find_migration(spec.name)
    snapshot = store.snapshots.latest_snapshot(migration_id) if migration_id is not None else None
    if migration_id is None or snapshot is None:
        raise PlanError(f"no inventory yet for migration {spec.name!r}: nothing to accept")
    owners = inventory_index(store.snapshots.load_snapshot(snapshot.id))
    found, _ = store.scans.current_key_findings(migration_id)
    key_ids = {
        f.key_id
        for f in found
        if f.key_id
        and f.key_id in owners
        and (owners[f.key_id].account_id, owners[f.key_id].user) == (account_id, user)
    }
    if not key_ids:
        raise PlanError(
            f"the current key scans find no key of {account_id}/{user} written down: "
            "nothing to accept (run 'iamc scan' first?)"
        )
    acceptance = KeyAcceptance(
        account_id=account_id,
        user=user,
        approver=approver.strip(),
        reason=reason.strip(),
        key_ids=tuple(sorted(key_ids)),
        at=datetime.now(UTC),
        scan_run_id=store.scans.latest_key_scan_run(migration_id),
    )
    store.scans.record_key_acceptance(migration_id, acceptance)
    return acceptance
