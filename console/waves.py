"""The waves table in the Prefect UI: per wave, accounts, users migrated and what is pending."""

from __future__ import annotations

import logging
from pathlib import Path

from console.operator import artifact_key, publish_table
from domain.errors import IamcError
from domain.plan import Plan
from domain.records import AccountInventory
from engine.migration import Migration
from engine.reports import WAVE_COLUMNS, waves_report

log = logging.getLogger(__name__)


def waves_artifact_key(migration: str) -> str:
    """``<migration>-waves``: one key per migration, so the table versions as waves progress."""
    return artifact_key(migration, "waves")


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
    publish_table(
        key,
        [{column: row[column] for column in WAVE_COLUMNS} for row in rows],
        f"Waves of migration {meta['migration']} (inventory snapshot {meta['snapshot_id']}): "
        "per wave, its accounts, users migrated, disabled and deleted, CIS 1.21 verdicts, and "
        "what it waits for ('pending').",
    )
    return key
