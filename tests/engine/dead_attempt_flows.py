"""A runbook-shaped flow whose first attempt dies inside a step's subflow, for
``test_dead_attempt.py``; ``python -m tests.engine.dead_attempt_flows FLOW_RUN_ID`` runs that
flow run in a process of its own (as a worker's would), which the step kills.

Each step's subflow records the stage it was called for and the stage of the flow run it runs
in (the journal binds a stage's run to its flow run: the real bug's resume found the disable
run's), and that its stage is done, before its work; the parent skips a stage that is done, as
a resumed migration does.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from uuid import UUID

from prefect import flow

from engine.prefect_runtime import end_what_a_dead_attempt_left

STAGES = ("disable", "delete")


@flow
def stage_step(stage: str, workdir: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    # What the journal binds a stage's run to: its flow run, as the server has it.
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run.id))
    work = Path(workdir)
    with (work / "ran").open("a") as ran:
        ran.write(f"{stage}:{run.parameters['stage']}\n")
    (work / f"{stage}.done").touch()
    if (work / "die").exists():  # the worker dies in the middle of the stage
        (work / "die").unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    return stage


@flow
def stages_run(workdir: str, end_dead: bool) -> list[str]:
    if end_dead:
        end_what_a_dead_attempt_left()
    return [
        stage_step(stage, workdir)
        for stage in STAGES
        if not (Path(workdir) / f"{stage}.done").exists()
    ]


def main(flow_run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    run_flow(stages_run, flow_run=run, parameters=run.parameters)


if __name__ == "__main__":
    main(sys.argv[1])
