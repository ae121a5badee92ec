"""The operators are told: Prefect automations on a real server send a migration's paused,
failed and crashed flow runs to a notification block, and mark a silent running one Crashed.

The server is one of this module's own, with Prefect's triggers service on (the tests' usual
servers run without it). The notification block is a Custom Webhook pointed at a receiver in
this process; the flow runs are real deployments served in a process of their own, which the
test kills (-9, with the flow runs it started) as a machine dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from domain.errors import ServeError
from iamc.automations import AutomationNames, ensure_automations, heartbeat_env
from iamc.serve import start_server, stop_process
from tests.conftest import _copy_migrated_database

pytestmark = pytest.mark.e2e

MIGRATION = "auto-e2e"
BLOCK = "custom-webhook/ops-alerts"
HEARTBEAT_S = 30  # Prefect's shortest
CRASHED_AFTER_S = 35
# The proactive trigger is evaluated every 5 s (PREFECT_SERVER_EVENTS_PROACTIVE_GRANULARITY),
# then the action runs; a loaded 2-core machine adds its share.
SLACK_S = 25
FLOWS = Path(__file__).with_name("automation_flows.py")
ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A webhook on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.arrived: list[datetime] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._arrived:
                    receiver.messages.append(json.loads(body))
                    receiver.arrived.append(datetime.now(UTC))
                    receiver._arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def delay(self, message: dict, since: datetime) -> float:
        """Seconds from ``since`` to the message's arrival."""
        return (self.arrived[self.messages.index(message)] - since).total_seconds()

    def wait_for(self, text: str, timeout: float) -> dict:
        """The first message whose subject or body contains ``text``."""

        def found() -> dict | None:
            return next((m for m in self.messages if text in m["subject"] + m["body"]), None)

        with self._arrived:
            self._arrived.wait_for(found, timeout)
            message = found()
        assert message is not None, f"no message with {text!r} in {timeout} s: {self.messages}"
        return message

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def automations_api(tmp_path_factory) -> Iterator[str]:
    """A Prefect server of this module's own, its triggers (automations) service on."""
    home = tmp_path_factory.mktemp("prefect-automations")
    _copy_migrated_database(home)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")
        process, api_url = start_server(0, home, health_timeout=300)
    yield api_url
    stop_process(process)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


@contextmanager
def client_of(api_url: str):
    """A Prefect client of ``api_url`` (this process's settings point at another server)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


def save_webhook_block(url: str) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    CustomWebhookNotificationBlock(
        name="ops", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save(BLOCK.split("/")[1], overwrite=True)


def ours(client) -> list[str]:
    names = AutomationNames.of(MIGRATION)
    wanted = {names.paused, names.failed, names.silent}
    return sorted(a.name for a in client.read_automations() if a.name in wanted)


def test_automations_are_made_once_and_a_missing_block_is_named(automations_api, receiver):
    from prefect.blocks.webhook import Webhook

    names = AutomationNames.of(MIGRATION)
    with client_of(automations_api) as client:
        with pytest.raises(ServeError) as missing:
            ensure_automations(MIGRATION, "custom-webhook/nobody-made-it")
        message = str(missing.value)
        assert "'custom-webhook/nobody-made-it'" in message and "does not exist" in message
        assert "save('nobody-made-it')" in message and automations_api in message
        assert ours(client) == []

        # Prefect's plain Webhook block calls a URL but can't notify.
        Webhook(method="POST", url=receiver.url).save("plain-hook", overwrite=True)
        with pytest.raises(ServeError, match=r"'webhook/plain-hook'.*can't send notifications"):
            ensure_automations(MIGRATION, "webhook/plain-hook")

        with pytest.raises(ServeError, match="crashed_after_seconds = 30 is not longer"):
            ensure_automations(MIGRATION, None, heartbeat_seconds=30, crashed_after_seconds=30)

        save_webhook_block(receiver.url)
        first = ensure_automations(MIGRATION, BLOCK, crashed_after_seconds=100)
        again = ensure_automations(MIGRATION, BLOCK, crashed_after_seconds=90)
        assert first == again == [names.paused, names.failed, names.silent]
        assert ours(client) == sorted(first)
        (silent,) = client.read_automations_by_name(names.silent)
        assert silent.trigger.within.total_seconds() == 90  # updated in place

        # No block any more: only the crash detection stays.
        assert ensure_automations(MIGRATION, None) == [names.silent]
        assert ours(client) == [names.silent]
        for automation in client.read_automations():
            client.delete_automation(automation.id)


def test_operators_are_told_of_paused_failed_and_dead_runs(automations_api, receiver, tmp_path):
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: automations_api}):
        ui = PREFECT_UI_URL.value().rstrip("/")
    log_file = tmp_path / "serve.log"
    env = {
        **os.environ,
        "PREFECT_API_URL": automations_api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        **heartbeat_env(HEARTBEAT_S),
    }
    with client_of(automations_api) as client:
        save_webhook_block(receiver.url)
        ensure_automations(
            MIGRATION, BLOCK, heartbeat_seconds=HEARTBEAT_S, crashed_after_seconds=CRASHED_AFTER_S
        )
        served = subprocess.Popen(
            [sys.executable, str(FLOWS), MIGRATION],
            env=env,
            cwd=ROOT,
            stdout=log_file.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its flow runs' processes too: one group to kill
        )
        try:
            runs = {
                name: client.create_flow_run_from_deployment(deployment_id)
                for name, deployment_id in wait_for_deployments(client, log_file).items()
            }
            paused_is_told(client, receiver, runs["approve"], ui)
            failed_is_told(client, receiver, runs["apply"], ui)
            paused_and_alive_is_left_alone(client, runs["approve"])
            client.resume_flow_run(runs["approve"].id)
            assert wait_for_state(client, runs["approve"].id, {"COMPLETED"}, timeout=60)
            last_heartbeat = wait_for_heartbeat(client, runs["inventory"].id)

            os.killpg(served.pid, signal.SIGKILL)  # the machine dies: runner and flow runs
            dead_is_crashed_and_told(client, receiver, runs["inventory"], ui, last_heartbeat)

            # Exactly one message each; none for the other migration's failed run, which
            # failed long before the crash was detected, nor for the resumed run.
            assert len(receiver.messages) == 3, receiver.messages
            assert client.read_flow_run(runs["another"].id).state.type.value == "FAILED"
            assert client.read_flow_run(runs["approve"].id).state.type.value == "COMPLETED"
        finally:
            stop_process(served)
            for automation in client.read_automations():
                client.delete_automation(automation.id)


def paused_is_told(client, receiver: Receiver, run, ui: str) -> None:
    message = receiver.wait_for(run.name, timeout=120)
    assert message["subject"] == f"iamc {MIGRATION}: {run.name} waits for approval"
    body = message["body"]
    assert f"Flow run {run.name} of deployment 'approve ({MIGRATION})' is Paused" in body
    assert f"Open the run: {ui}/runs/flow-run/{run.id}\n" in body
    state = client.read_flow_run(run.id).state
    print(f"paused message {receiver.delay(message, state.timestamp):.1f} s after the pause")


def failed_is_told(client, receiver: Receiver, run, ui: str) -> None:
    message = receiver.wait_for(run.name, timeout=120)
    assert message["subject"] == f"iamc {MIGRATION}: {run.name} Failed"
    body = message["body"]
    assert f"Flow run {run.name} of deployment 'apply ({MIGRATION})' is Failed" in body
    assert "Injected: the plan is stale, plan again" in body
    assert f"Open the run: {ui}/runs/flow-run/{run.id}\n" in body
    assert "Press Retry after fixing the cause" in body
    state = client.read_flow_run(run.id).state
    print(f"failed message {receiver.delay(message, state.timestamp):.1f} s after the failure")


def paused_and_alive_is_left_alone(client, run) -> None:
    """A paused run whose process lives keeps sending heartbeats: it is never marked Crashed."""
    paused_at = client.read_flow_run(run.id).state.timestamp
    # Its first heartbeat came before the pause: the window it opened has closed by then, and
    # the proactive trigger has been evaluated since (every 5 s).
    while (datetime.now(UTC) - paused_at).total_seconds() < CRASHED_AFTER_S + 10:
        time.sleep(1)
    assert client.read_flow_run(run.id).state.name == "Paused"


def wait_for_heartbeat(client, flow_run_id) -> datetime:
    """When the running flow run's latest heartbeat occurred, once the server has one."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    wait_for_state(client, flow_run_id, {"RUNNING"}, timeout=120)
    heartbeats = EventFilter(
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # At most 50 a page (the client's default of 100 is refused).
        events = client.read_events(heartbeats, limit=1).events
        if events:
            return events[0].occurred
        time.sleep(1)
    raise AssertionError("the running flow run sent no heartbeat")


def dead_is_crashed_and_told(client, receiver: Receiver, run, ui: str, heartbeat) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    killed = time.monotonic()
    crashed = wait_for_state(client, run.id, {"CRASHED"}, timeout=CRASHED_AFTER_S + SLACK_S)
    took = time.monotonic() - killed
    assert f"No heartbeat for {CRASHED_AFTER_S} s" in crashed.state.message
    message = receiver.wait_for(f"{run.name} Crashed", timeout=30)
    assert (
        f"Flow run {run.name} of deployment 'inventory ({MIGRATION})' is Crashed"
        in (message["body"])
    )
    assert f"No heartbeat for {CRASHED_AFTER_S} s" in message["body"]
    assert f"Open the run: {ui}/runs/flow-run/{run.id}\n" in message["body"]
    # Its subflow run died with it: Crashed too, not Running for good in the UI.
    (step,) = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
        )
    )
    step = wait_for_state(client, step.id, {"CRASHED"}, timeout=SLACK_S)
    assert f"No heartbeat for {CRASHED_AFTER_S} s" in step.state.message
    silence = (crashed.state.timestamp - heartbeat).total_seconds()
    print(
        f"crashed {took:.1f} s after the kill, {silence:.1f} s after its last heartbeat; "
        f"its message {receiver.delay(message, crashed.state.timestamp):.1f} s after that"
    )


def wait_for_deployments(client, log_file: Path) -> dict[str, object]:
    """The served deployments' ids by the word their names start with, once all are there."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = {
            "another" if "another" in d.name else d.name.split()[0]: d.id
            for d in client.read_deployments()
        }
        if len(found) == 4:
            return found
        time.sleep(1)
    raise AssertionError(f"deployments not served: {log_file.read_text()}")


def wait_for_state(client, flow_run_id, states: set[str], timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.type.value in states:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {run.name} is {run.state}, not {states}")
        time.sleep(1)
