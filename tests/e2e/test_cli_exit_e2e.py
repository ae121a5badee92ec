"""A step command exits fast, yet its last log lines and final state reach the Prefect server."""

from __future__ import annotations

import time
from pathlib import Path

SPEC = """name = "exit"
state = "sqlite:///state.db"
[inventory]
concurrency = 4
"""


def _last_inventory_run_logs(prefect_api: str) -> list[str]:
    """The messages the server holds for the latest inventory flow run (it must be Completed)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: prefect_api}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["inventory"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        assert runs and runs[0].state is not None and runs[0].state.is_completed()
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])), limit=200
        )
    return [log.message for log in logs]


def test_a_step_command_sends_its_last_logs_before_it_exits(iamc, prefect_api, tmp_path: Path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    began = time.monotonic()
    result = iamc("-v", "inventory", "-c", str(spec))
    took = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    print(f"iamc -v inventory: {took:.1f} s")
    # Read right after the process ended: nothing may still be in flight.
    messages = _last_inventory_run_logs(prefect_api)
    # The flow's last INFO lines are written just before the process exits.
    assert any(m.startswith("inventory finished: run id") for m in messages), messages
    assert any(m.startswith("Finished in state Completed") for m in messages), messages


def test_without_verbose_the_run_logs_reach_the_ui_not_the_console(
    iamc, prefect_api, tmp_path: Path
):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    result = iamc("inventory", "-c", str(spec))
    assert result.returncode == 0, result.stderr
    messages = _last_inventory_run_logs(prefect_api)
    assert any(m.startswith("inventory finished: run id") for m in messages), messages
    assert "Finished in state" not in result.stdout + result.stderr
