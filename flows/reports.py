"""Read-side of the runbook: what the latest snapshot says, for the CLI's reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from iamc.errors import IamcError
from iamc.records import Finding
from iamc.reports import inventory_rows
from iamc.spec import load_spec
from state import Store


class NoInventoryError(IamcError):
    exit_code = 2


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
