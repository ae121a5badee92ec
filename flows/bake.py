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
from console.operator import artifact_key, publish_table
from console.run_names import step_run_name
from domain.retire import BakeState
from engine.bake_evidence import BAKE_RUN, bake_report, decide
from engine.migration import Migration

__all__ = ["BAKE_RUN", "bake_report", "bake_watch_flow", "decide"]


def counted(counts: dict[str, int]) -> str:
    """``25 baking, 2 ready, 1 in-use``: users per bake state, in the states' order."""
    order = {str(state): n for n, state in enumerate(BakeState)}
    ordered = sorted(counts.items(), key=lambda item: order.get(str(item[0]), len(order)))
    return ", ".join(f"{n} {state}" for state, n in ordered) or "no disabled user yet"


def _publish(report: dict[str, Any], migration: str) -> None:
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
    run = f" (bake-watch run {report['run_id']})" if report.get("run_id") is not None else ""
    publish_table(
        artifact_key(migration, "bake-watch"),
        rows,
        f"**Bake period of {migration}**{run}: "
        f"{counted(report['counts'])}. A user in-use is not deleted until it is re-enabled "
        "or a decision is recorded (`iamc bake decide`).",
    )


@flow(name="bake-watch", flow_run_name=step_run_name("bake-watch"), log_prints=False)
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
    logger.info("bake: %s", counted(report["counts"]))
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
