"""The local Prefect server: the first step command starts it, later ones reuse it, stop ends it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

IAMC = [sys.executable, "-m", "iamc.cli"]


def iamc(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API"))}
    env.update(PREFECT_HOME=str(home), IAMC_LOCAL_PREFECT_SERVER="on")
    return subprocess.run(
        [*IAMC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


def test_step_commands_share_one_local_server_until_it_is_stopped(tmp_path: Path):
    home = tmp_path / "prefect"
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "local-server"\nstate = "sqlite:///state.db"\n')
    assert iamc("server", "status", home=home, cwd=tmp_path).returncode == 1
    try:
        # A step command with no server starts one (and says so) and leaves it running.
        first = iamc("plan", "-c", str(spec), home=home, cwd=tmp_path)
        assert "starting a local Prefect server" in first.stderr, first.stderr
        assert "no inventory yet" in first.stderr  # the step itself ran and refused
        status = iamc("server", "status", home=home, cwd=tmp_path)
        assert status.returncode == 0 and "Prefect server: http://127.0.0.1:" in status.stdout
        began = time.monotonic()
        second = iamc("plan", "-c", str(spec), home=home, cwd=tmp_path)
        reused = time.monotonic() - began
        assert "starting a local Prefect server" not in second.stderr, second.stderr
        assert "no inventory yet" in second.stderr
        print(f"step command reusing the server: {reused:.1f} s")
    finally:
        stopped = iamc("server", "stop", home=home, cwd=tmp_path)
    assert "stopped the Prefect server" in stopped.stdout
    assert iamc("server", "status", home=home, cwd=tmp_path).returncode == 1


# A stand-in for a Prefect server that is still starting: a real process on a real port that
# answers /api/health only after ``delay`` seconds (never, when negative).
_SLOW_SERVER = """
import http.server, sys, time
delay = float(sys.argv[2])
started = time.monotonic()
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = delay >= 0 and time.monotonic() - started >= delay
        self.send_response(200 if ready and self.path == "/api/health" else 503)
        self.end_headers()
        self.wfile.write(b"true")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def _slow_server(monkeypatch, tmp_path: Path, delay: float, prefect_version: str | None = None):
    import json
    import socket

    from iamc import prefect_server

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", _SLOW_SERVER, str(port), str(delay)])
    state = prefect_server._state_path()
    state.parent.mkdir(parents=True, exist_ok=True)
    api_url = f"http://127.0.0.1:{port}/api"
    state.write_text(
        json.dumps({"pid": process.pid, "port": port, "api_url": api_url, "home": "x"})
    )
    if prefect_version is not None:
        (state.parent / prefect_server._VERSION_FILE).write_text(f"{process.pid} {prefect_version}")
    return process, api_url


def _console():
    import io

    from rich.console import Console

    out = io.StringIO()
    return Console(file=out, width=200), out


def test_a_command_waits_for_a_server_another_command_is_starting(monkeypatch, tmp_path: Path):
    from iamc import prefect_server

    process, api_url = _slow_server(monkeypatch, tmp_path, delay=1.5)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("IAMC_LOCAL_PREFECT_SERVER", "on")
    console, out = _console()
    try:
        assert prefect_server.running() is None  # alive, not answering yet
        assert prefect_server.use_local_server(console) == api_url
    finally:
        process.kill()
        process.wait()
    assert os.environ["PREFECT_API_URL"] == api_url
    assert f"waiting for the local Prefect server (pid {process.pid}) to start" in out.getvalue()
    assert "starting a local Prefect server" not in out.getvalue()  # no second server


def test_a_server_that_never_answers_does_not_fail_the_command(monkeypatch, tmp_path: Path):
    from iamc import prefect_server

    process, _ = _slow_server(monkeypatch, tmp_path, delay=-1)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("IAMC_LOCAL_PREFECT_SERVER", "on")
    monkeypatch.setattr(prefect_server, "STARTUP_TIMEOUT_S", 1.0)
    console, out = _console()
    try:
        # The command goes on with Prefect's temporary server, saying why.
        assert prefect_server.use_local_server(console) is None
    finally:
        process.kill()
        process.wait()
    assert "PREFECT_API_URL" not in os.environ
    text = out.getvalue()
    assert "did not answer in 1 s" in text and "starts a temporary one" in text, text


def _version_check_after_use(monkeypatch, tmp_path: Path, prefect_version: str | None) -> str:
    """PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED once a command uses a server that Prefect
    ``prefect_version`` started ("unset" if it is not set)."""
    from iamc import prefect_server

    process, api_url = _slow_server(monkeypatch, tmp_path, 0, prefect_version)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", raising=False)
    monkeypatch.setenv("IAMC_LOCAL_PREFECT_SERVER", "on")
    try:
        assert prefect_server.use_local_server(_console()[0]) == api_url
    finally:
        process.kill()
        process.wait()
    return os.environ.get("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "unset")


def test_a_server_this_prefect_started_needs_no_version_handshake(monkeypatch, tmp_path: Path):
    from importlib.metadata import version

    assert _version_check_after_use(monkeypatch, tmp_path, version("prefect")) == "false"


def test_a_server_another_or_unknown_prefect_started_is_version_checked(
    monkeypatch, tmp_path: Path
):
    assert _version_check_after_use(monkeypatch, tmp_path / "a", "2.0.0") == "unset"
    assert _version_check_after_use(monkeypatch, tmp_path / "b", None) == "unset"


def test_a_version_recorded_for_an_earlier_server_does_not_count(monkeypatch, tmp_path: Path):
    from importlib.metadata import version

    from iamc import prefect_server

    # An older iamc started the server that runs now; the note is from the one before.
    home = tmp_path / "prefect"
    home.mkdir()
    (home / prefect_server._VERSION_FILE).write_text(f"1 {version('prefect')}")
    assert _version_check_after_use(monkeypatch, tmp_path, None) == "unset"


def test_a_server_is_never_started_on_a_port_another_process_holds(tmp_path: Path):
    """The port is bound before the server starts, not probed: a port another server took
    meanwhile is refused at once, where the old probe let a second server start, die on the
    port, and the first one's health check pass for it."""
    import pytest

    from iamc.serve import local_listener, spawn_server

    with local_listener() as held:
        port = held.getsockname()[1]
        with pytest.raises(OSError):
            spawn_server(port, tmp_path / "prefect")
        with pytest.raises(OSError):
            local_listener(port)
    assert not (tmp_path / "prefect" / "server.log").exists()  # nothing was started
