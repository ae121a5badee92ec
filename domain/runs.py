"""Runs as records: their kinds and statuses, and what the engine and the store both read."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Run kinds that change AWS through the journal (the others: inventory, mapping, plan).
APPLY_RUN = "apply"
ROLLBACK_RUN = "rollback"
# Journaled as well, but of deleted users rather than of a plan stage (flows.restore).
RESTORE_RUN = "restore"
STAGE_RUN_KINDS = (APPLY_RUN, ROLLBACK_RUN)
VERIFY_RUN = "verify"
# Reads what the migration made against AWS, and may store a plan that puts it back.
DRIFT_RUN = "drift"
NOTIFY_RUN = "notify"

RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
FINISHED_RUN_STATUSES = frozenset({RUN_SUCCEEDED, RUN_FAILED})
# What a run is, as an operator reads it. Stored: running, succeeded, failed. Derived on read
# (engine.runs.view_runs): interrupted (still "running" in the DB, but its process is gone: no
# live lease, no live pid) and superseded (a later run of the same plan stage exists: only the
# latest run may act).
RUN_INTERRUPTED = "interrupted"
RUN_SUPERSEDED = "superseded"


@dataclass(frozen=True)
class RunInfo:
    """A run as recorded: ``migration`` is the migration's name, ``migration_id`` its id."""

    id: int
    migration: str
    kind: str
    status: str
    started: datetime
    finished: datetime | None
    params: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    migration_id: int
    process: str | None = None


@dataclass(frozen=True)
class StageLockInfo:
    """A lease row: which holder (``host:pid:nonce``) holds which plan stage, for which run."""

    plan_id: int
    stage: str
    holder: str
    run_id: int | None
    acquired: datetime
    heartbeat: datetime


def this_process() -> str:
    """``host:pid`` of this process, as recorded on the runs it starts or continues."""
    return f"{socket.gethostname()}:{os.getpid()}"


def released_plans(runs: list[RunInfo], stage: str = "provision") -> set[int]:
    """Plans whose stage was last acted on by a rollback that succeeded: they use nothing."""
    last: dict[int, RunInfo] = {}
    for run in runs:
        if run.kind in (APPLY_RUN, ROLLBACK_RUN) and run.params.get("stage") == stage:
            last[int(run.params["plan_id"])] = run
    return {
        plan_id
        for plan_id, run in last.items()
        if run.kind == ROLLBACK_RUN and run.status == RUN_SUCCEEDED
    }
