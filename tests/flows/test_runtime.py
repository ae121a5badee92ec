"""A flow run starts without FastAPI, ends when its final state is recorded, not later, and
its work runs with the old heap out of the cycle collector's passes."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect import Flow, flow, flow_engine

from domain.plan import Stage
from engine.prefect_runtime import (
    end_flow_runs_without_waiting,
    keep_old_objects_frozen,
    old_objects_frozen,
    serialize_plain_parameters_without_fastapi,
)
from tasks.aws import AwsSessions


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
    # Prefect's own, even if an earlier test of this process (a CLI run in process) switched
    # it; restored after the test, so the switch below stays inside it.
    current = flow_engine._send_heartbeats
    shipped = current.__wrapped__ if getattr(current, "_iamc_switched", False) else current
    monkeypatch.setattr(flow_engine, "_send_heartbeats", shipped)
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


@pytest.fixture
def original_serializer(monkeypatch: pytest.MonkeyPatch):
    """Prefect's own Flow.serialize_parameters; the switch is undone after the test."""
    original = Flow.serialize_parameters
    monkeypatch.setattr(Flow, "serialize_parameters", original)
    return original


@pytest.mark.parametrize(
    "parameters",
    [
        {"spec_path": "/x/spec.toml", "profile": None},
        {"spec_path": "s", "plan_id": 3, "stage": Stage.DISABLE, "resume_run_id": None},
        {"spec_path": "s", "run_id": 7, "dry_run": True, "user": "111111111111/jane"},
        {"spec_path": "s", "approval_timeout_seconds": 604800, "ratio": 0.5},
        {"spec_path": Path("/x/spec.toml"), "accounts": ["111111111111"]},  # Prefect's own
    ],
)
def test_parameters_are_recorded_as_prefect_records_them(original_serializer, parameters):
    expected = original_serializer(instant, dict(parameters))
    assert serialize_plain_parameters_without_fastapi()
    assert instant.serialize_parameters(dict(parameters)) == expected


def test_plain_parameters_import_no_fastapi():
    """In a fresh process (this one may have FastAPI already): a flow run's parameters as a
    step command passes them."""
    script = (
        "import sys\n"
        "from prefect import flow\n"
        "from domain.plan import Stage\n"
        "from engine.prefect_runtime import serialize_plain_parameters_without_fastapi\n"
        "serialize_plain_parameters_without_fastapi()\n"
        "@flow\n"
        "def step(spec_path: str, plan_id: int, stage: Stage) -> None: ...\n"
        "step.serialize_parameters({'spec_path': 's', 'plan_id': 1, 'stage': Stage.PROVISION})\n"
        "print('fastapi' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.strip() == "False"


def test_old_objects_are_frozen_while_the_work_runs_and_given_back_after(monkeypatch):
    import engine.prefect_runtime

    monkeypatch.setattr(engine.prefect_runtime, "_keep_frozen", False)
    # A test run earlier in this process may have left its heap frozen (a step command's
    # imports are: keep_old_objects_frozen); start from an unfrozen one.
    gc.unfreeze()
    old = [[]]
    with old_objects_frozen():
        young = [[]]
        tracked = gc.get_objects()  # what the collector's passes walk
        assert not any(o is old for o in tracked)
        assert any(o is young for o in tracked)
    assert gc.get_freeze_count() == 0
    assert any(o is old for o in gc.get_objects())


def test_a_step_command_keeps_what_it_froze_frozen(monkeypatch):
    """A step command froze its imports (imports_without_gc): unfreezing would hand them back."""
    import engine.prefect_runtime

    monkeypatch.setattr(engine.prefect_runtime, "_keep_frozen", False)
    gc.freeze()
    try:
        keep_old_objects_frozen()
        frozen = gc.get_freeze_count()
        with old_objects_frozen():
            pass
        # Not unfrozen (0 then); a frozen object still dies when its last reference goes,
        # and this process's other threads run meanwhile: not an exact count.
        assert gc.get_freeze_count() > frozen // 2 > 0
    finally:
        gc.unfreeze()


def test_the_inventory_runs_with_the_old_heap_frozen(aws, tmp_path, monkeypatch):
    import engine.prefect_runtime
    import flows.inventory

    monkeypatch.setattr(engine.prefect_runtime, "_keep_frozen", False)
    seen: list[int] = []
    real = flows.inventory.inventory_account

    def inventory_account(*args, **kwargs):
        seen.append(gc.get_freeze_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.inventory, "inventory_account", inventory_account)
    org = AwsSessions(region="us-east-1").management().client("organizations")
    org.create_organization(FeatureSet="ALL")
    org.create_account(AccountName="alpha", Email="alpha@example.com")
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')

    frozen_before = gc.get_freeze_count()
    assert flows.inventory.run_inventory(spec)["accounts"] == 1
    assert seen and all(count > frozen_before for count in seen)
    assert gc.get_freeze_count() == frozen_before
