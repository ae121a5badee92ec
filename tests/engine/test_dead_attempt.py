"""A Retry of a flow run whose process died mid-step: the next step runs, not the dead one again.

Prefect reattaches a subflow call to the subflow run of a task run still Running under the
same key (``FlowRunEngine.load_subflow_run``): the first call of the Retry's attempt ran in the
dead attempt's subflow run, whose id and parameters are the dead step's. A Retry of centralize
whose worker died in the disable stage ran the disable resume in place of delete (found in the
walkthrough).
``end_what_a_dead_attempt_left`` marks what the dead attempt left Running Crashed first.

Real flow runs on the tests' Prefect server; the first attempt in a process of its own, killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.engine.dead_attempt_flows import stages_run

ROOT = Path(__file__).resolve().parents[2]


def _dies_then_is_retried(workdir: Path, end_dead: bool) -> list[str]:
    """The run's first attempt dies in its disable step; Retry pressed; what each ran."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import Crashed, Scheduled

    (workdir / "die").touch()
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            stages_run, parameters={"workdir": str(workdir), "end_dead": end_dead}
        )
        first = subprocess.run(
            [sys.executable, "-m", "tests.engine.dead_attempt_flows", str(run.id)],
            cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert first.returncode == -9, first.stderr[-2000:]
        assert client.read_flow_run(run.id).state.type.value == "RUNNING"
        # What the automation, then the operator's Retry, do (the UI's Retry: AwaitingRetry).
        client.set_flow_run_state(run.id, Crashed(message="no heartbeat"), force=True)
        client.set_flow_run_state(run.id, Scheduled(name="AwaitingRetry"), force=True)
        retried = client.read_flow_run(run.id)
    run_flow(stages_run, flow_run=retried, parameters=retried.parameters)
    return (workdir / "ran").read_text().split()


def test_a_retry_after_a_dead_attempt_runs_the_next_step(tmp_path):
    assert _dies_then_is_retried(tmp_path, end_dead=True) == ["disable:disable", "delete:delete"]


def test_without_ending_what_it_left_the_retry_reruns_the_dead_step(tmp_path):
    """Prefect's behaviour the fix is for: if it changes, the fix may go (this test says so)."""
    # The delete call ran in the dead disable step's flow run.
    assert _dies_then_is_retried(tmp_path, end_dead=False) == ["disable:disable", "delete:disable"]
