"""Waiting on a served migration's flow runs, as an operator watching the UI does."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.migration import Migration
from engine.progress import migration_progress
from engine.runbook import wave_steps
from engine.wave_progress import waves_progress

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait(check: Callable[[], Any], what: str, timeout: float = 300) -> Any:
    """What ``check`` returns once it is truthy, asked every second for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def flow_run_in(client: Any, flow_run_id: Any, states: set[str], timeout: float = 300) -> Any:
    """The flow run once its state's type is one of ``states``."""

    def check() -> Any:
        run = client.read_flow_run(flow_run_id)
        return run if run.state and run.state.type.value in states else None

    return wait(check, f"flow run in {states}", timeout)


def next_pause(client: Any, flow_run_id: Any, pause_key: str | None) -> Any:
    """The run once it is paused by a pause other than ``pause_key``, or has ended (else
    None)."""
    run = client.read_flow_run(flow_run_id)
    if run.state is None:
        return None
    kind = run.state.type.value
    if kind in TERMINAL:
        return run
    if kind == "PAUSED" and run.state.state_details.pause_key != pause_key:
        return run
    return None


def asked(spec: Path) -> tuple[str, str] | None:
    """(wave, step) of the first unfinished step: what a paused run waits for."""

    def read(mig: Migration) -> tuple[str, str] | None:
        m = migration_progress(mig)
        for w in waves_progress(mig, m):
            step = next((s for s in wave_steps(m, w, mig.spec) if s.state != "done"), None)
            if step is not None:
                return w.wave, step.name
        return None

    return Migration.call(read, str(spec))
