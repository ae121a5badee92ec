"""The waves table in the Prefect UI: per wave, accounts, users migrated and what is pending."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from prefect.artifacts import create_table_artifact

from domain.errors import IamcError
from domain.plan import Plan
from domain.records import AccountInventory
from engine.migration import Migration
from engine.reports import WAVE_COLUMNS, waves_report

log = logging.getLogger(__name__)


def waves_artifact_key(migration: str) -> str:
    """One key per migration, so the table versions as the waves progress."""
    return "waves-" + re.sub(r"[^a-z0-9-]+", "-", migration.lower()).strip("-")


def publish_waves_artifact(
    spec_path: str | Path,
    known_plans: dict[int, Plan] | None = None,
    known_snapshot: tuple[int, list[AccountInventory]] | None = None,
) -> str | None:
    """Publish ``iamc report waves`` as a table artifact; its key, or None when there is
    nothing to report yet (no inventory). Never fails the flow that publishes it.

    Args:
        known_plans: stored plans the caller holds in memory, by id (not read back).
        known_snapshot: (snapshot id, its inventories) the caller holds in memory.
    """
    try:
        with Migration.open(spec_path) as mig:
            rows, meta = waves_report(mig, known_plans, known_snapshot)
    except IamcError as err:
        log.info("waves table not published: %s", err)
        return None
    key = waves_artifact_key(meta["migration"])
    create_table_artifact(
        key=key,
        table=[{column: row[column] for column in WAVE_COLUMNS} for row in rows],
        description=f"Waves of migration {meta['migration']} "
        f"(inventory snapshot {meta['snapshot_id']})",
    )
    return key
