"""Runbook step 5b: the bake period between disabling users and deleting them.

``bake-watch`` (daily, served by ``iamc serve``; ``iamc bake`` by hand) looks, for every user
this migration disabled, for evidence of attempted use since it was disabled — CloudTrail
events by user name and by access key id (denied calls, failed console sign-ins) and access
keys' last-used dates moving — records it in the state DB, and reports each user as
``baking``, ``ready``, ``in-use`` (who/when/where), ``keep``, ``re-enabled`` or ``deleted``.
A user ``in-use`` is not deleted until it is re-enabled or a person records a decision
(``iamc bake decide``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from console.bake_pause import resume_bake_pauses
from domain.retire import BakeState
from engine.bake_evidence import BAKE_RUN, bake_report, decide
from engine.migration import Migration

__all__ = ["BAKE_RUN", "bake_report", "bake_watch_flow", "decide"]


def _publish(report: dict[str, Any], migration: str) -> None:
    from prefect.artifacts import create_table_artifact

    rows = [
        {
            "user": u["user"],
            "state": u["state"],
            "disabled at": u["disabled_at"] or "",
            "deletable from": u["deletable_from"] or "",
            "evidence": "; ".join(e["line"] for e in u["evidence"][-3:]),
            "reason": u["reason"],
        }
        for u in report["users"]
    ]
    create_table_artifact(
        table=rows,
        key=f"bake-{migration}".lower().replace("_", "-"),
        description=f"Bake period of {migration}: {report['counts']}",
    )


@flow(name="bake-watch", log_prints=False)
def bake_watch_flow(
    spec_path: str, plan_id: int | None = None, resume_paused: bool = True
) -> dict[str, Any]:
    """Look for attempted use of every user this migration disabled; report who is ready.

    Then resume the ``centralize`` runs paused for the bake of a plan whose disabled users are
    all ready (none baking, none in use): they look again before anything is deleted.

    Args:
        spec_path: The migration spec (TOML).
        plan_id: Only the users this plan disabled; empty: every plan's.
        resume_paused: Resume the paused ``centralize`` runs of the plans that are ready
            (``centralize`` itself, watching before its delete, leaves this off).

    Returns:
        Counts per state, and each user's state with its evidence (who, when, where); under
        ``resumed``, the flow runs resumed.
    """
    from prefect import get_run_logger

    report = bake_report(spec_path, plan_id=plan_id)
    logger = get_run_logger()
    logger.info("bake: %s", report["counts"])
    for user in report["users"]:
        if user["state"] == BakeState.IN_USE:
            logger.warning("%s in use: %s", user["user"], user["reason"])
    migration = Migration.spec_of(spec_path).name
    _publish(report, migration)
    report["resumed"] = resume_bake_pauses(migration, ready_plans(report)) if resume_paused else []
    return report


def ready_plans(report: dict[str, Any]) -> set[int]:
    """The plans whose disabled users are all past the bake: none baking, none in use."""
    held = {BakeState.BAKING, BakeState.IN_USE}
    plans = {int(u["plan_id"]) for u in report["users"]}
    return {
        p
        for p in plans
        if not any(u["state"] in held for u in report["users"] if u["plan_id"] == p)
    }
