"""A flow run ends when its final state is recorded, not when Prefect's heartbeat thread wakes."""

from __future__ import annotations

import time

import pytest
from prefect import flow, flow_engine

from flows.runtime import end_flow_runs_without_waiting


@flow(name="instant", persist_result=False)
def instant() -> float:
    return time.monotonic()


def _tail_seconds() -> float:
    """Seconds from the end of an instant flow body to the flow call's return (best of 3)."""
    tails = []
    for _ in range(3):
        ended = instant()
        tails.append(time.monotonic() - ended)
    return min(tails)


@pytest.fixture
def heartbeats(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Prefect's heartbeats on (its default), each one recorded; the switch undone after."""
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    # Restored after the test, so the switch below stays inside it.
    monkeypatch.setattr(flow_engine, "_send_heartbeats", flow_engine._send_heartbeats)
    sent: list[object] = []
    emit = flow_engine.FlowRunEngine._emit_flow_run_heartbeat

    def recorded(engine, *args, **kwargs):
        sent.append(engine.flow_run.id)
        return emit(engine, *args, **kwargs)

    monkeypatch.setattr(flow_engine.FlowRunEngine, "_emit_flow_run_heartbeat", recorded)
    return sent


def test_a_flow_run_ends_without_waiting_for_the_heartbeat_thread(heartbeats):
    # Prefect as shipped: the heartbeat thread sleeps in 1 s steps and is joined at the end,
    # so an instant flow returns about a second after its body ended.
    assert _tail_seconds() > 0.6
    assert end_flow_runs_without_waiting()
    assert _tail_seconds() < 0.5


def test_heartbeats_are_still_sent(heartbeats):
    assert end_flow_runs_without_waiting()
    instant()
    assert len(heartbeats) == 1  # the first one, as the run starts


def test_the_switch_is_idempotent(heartbeats):
    assert end_flow_runs_without_waiting()
    switched = flow_engine._send_heartbeats
    assert end_flow_runs_without_waiting()
    assert flow_engine._send_heartbeats is switched
