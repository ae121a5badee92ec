"""The bake period as a pause of ``centralize``: who pauses, and who resumes it.

A ``centralize`` run whose wave's disabled users are still baking (or in use) pauses with a
key that names the migration and the plan (:func:`bake_pause_prefix`). The daily
``bake-watch`` resumes the paused runs of a plan once every user it disabled is ready; an
operator can press Resume at any time. A resumed run looks again (a fresh watch) and pauses
again if anyone is still baking or in use: nothing is deleted on a resume alone.
"""

from __future__ import annotations

import uuid

from console.operator import artifact_key, run_logger

CENTRALIZE_FLOW = "centralize"
# The paused run reads its state this often (as the approval pause): a resume is seen within
# seconds, for one small API read per poll.
POLL_SECONDS = 2


def bake_pause_prefix(migration: str, plan_id: int) -> str:
    """What every bake pause key of this plan starts with."""
    return artifact_key(migration, f"bake-pause-plan-{plan_id}") + "-"


def pause_for_bake(migration: str, plan_id: int, timeout_seconds: int) -> None:
    """Pause this flow run until it is resumed (bake-watch or Resume) or ``timeout_seconds``.

    Raises:
        prefect.exceptions.FlowPauseTimeout: Nobody resumed it in time.
    """
    from prefect.flow_runs import pause_flow_run

    # A new key every time: Prefect skips a pause whose key this run already used.
    key = bake_pause_prefix(migration, plan_id) + uuid.uuid4().hex[:12]
    pause_flow_run(timeout=timeout_seconds, poll_interval=POLL_SECONDS, key=key)


def resume_bake_pauses(migration: str, plan_ids: set[int]) -> list[str]:
    """Resume the ``centralize`` runs paused for the bake of any of ``plan_ids``.

    Returns:
        The ids of the flow runs resumed.
    """
    if not plan_ids:
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import resume_flow_run

    prefixes = tuple(bake_pause_prefix(migration, p) for p in sorted(plan_ids))
    logger = run_logger()
    try:
        with get_client(sync_client=True) as client:
            paused = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[CENTRALIZE_FLOW])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            )
    except Exception as err:  # the watch's report stands; a paused run can still be resumed
        logger.warning("could not look for paused centralize runs: %s", err)
        return []
    resumed = []
    for run in paused:
        key = (run.state.state_details.pause_key or "") if run.state else ""
        if not key.startswith(prefixes):
            continue  # another migration's bake, or an approval waiting for its form
        try:
            resume_flow_run(run.id)
        except (FlowPauseTimeout, RuntimeError) as err:
            logger.warning("could not resume centralize run %s: %s", run.name, err)
            continue
        logger.info("resumed centralize run %s: its bake period is over", run.name)
        resumed.append(str(run.id))
    return resumed
