"""The local Prefect server leaves no process behind: it ends when idle or when its home is gone.

Each test starts real servers (``python -m iamc.prefect_api_server``) as the CLI does, with a
database already migrated (``seed_prefect_home``): ~3 s of CPU each.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.leftovers import MARKER, leftovers

IAMC = [sys.executable, "-m", "iamc.cli"]


def _gone(pid: int) -> bool:
    """Whether ``pid`` ended (a child of this process is reaped here)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:  # not this process's child (or reaped already)
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def _wait_gone(pids: list[int], timeout: float) -> dict[int, float]:
    """Seconds until each of ``pids`` ended (those that outlive ``timeout`` are missing)."""
    began = time.monotonic()
    ended: dict[int, float] = {}
    while time.monotonic() - began < timeout and len(ended) < len(pids):
        for pid in pids:
            if pid not in ended and _gone(pid):
                ended[pid] = time.monotonic() - began
        time.sleep(0.2)
    return ended


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    _wait_gone([pid], 10)


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - a local server
        return reply.status


def _iamc(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API"))}
    env.update(PREFECT_HOME=str(home), IAMC_LOCAL_PREFECT_SERVER="on")
    return subprocess.run(
        [*IAMC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240
    )


def test_step_commands_in_deleted_directories_leave_no_server(tmp_path: Path, seed_prefect_home):
    """The reproduction: step commands in temporary directories, each with its own Prefect
    home, then the directories deleted. Each server saw its home go and ended."""
    workdirs = [tmp_path / f"work-{n}" for n in range(2)]
    pids = []
    try:
        for workdir in workdirs:
            home = workdir / "prefect"
            seed_prefect_home(home / "local-server")
            spec = workdir / "spec.toml"
            spec.write_text('name = "gone"\nstate = "sqlite:///state.db"\n')
            step = _iamc("plan", "-c", str(spec), home=home, cwd=workdir)
            assert "starting a local Prefect server" in step.stderr, step.stderr
            assert "no inventory yet" in step.stderr  # the step ran, against its server
            pids.append(json.loads((home / "iamc-local-server.json").read_text())["pid"])
        assert not any(_gone(pid) for pid in pids)  # the servers outlive their commands
        for workdir in workdirs:
            shutil.rmtree(workdir)
        ended = _wait_gone(pids, timeout=30)
        print("seconds from deletion to exit:", {p: round(s, 1) for p, s in ended.items()})
        assert sorted(ended) == sorted(pids), f"still running after 30 s: {set(pids) - {*ended}}"
    finally:
        for pid in pids:
            _kill_group(pid)


def test_a_local_server_nobody_uses_ends_after_the_idle_period(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed_prefect_home
):
    """Requests keep it running past the idle period; /health probes don't; then it ends by
    itself and takes its record with it, so the next command starts a new one."""
    import io

    from rich.console import Console

    from iamc import prefect_server

    idle_s = 6.0
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("IAMC_PREFECT_SERVER_IDLE_MINUTES", str(idle_s / 60))
    seed_prefect_home(tmp_path / "prefect" / "local-server")
    server = prefect_server.start(Console(file=io.StringIO()))
    try:
        began = time.monotonic()
        while time.monotonic() - began < 2 * idle_s:  # a client at work
            assert _get(f"{server.api_url}/admin/version") == 200
            time.sleep(1.0)
        assert not _gone(server.pid), "it ended while a client used it"
        last_request = time.monotonic()
        while time.monotonic() - last_request < idle_s + 4 and not _gone(server.pid):
            try:
                _get(f"{server.api_url}/health")  # iamc's own probes: not a use
            except OSError:  # it is stopping
                break
            time.sleep(1.0)
        ended = _wait_gone([server.pid], timeout=40)
        after = time.monotonic() - last_request
        print(f"ended {after:.1f} s after the last request (idle period {idle_s:.0f} s)")
        assert ended, "still running 40 s after its idle period"
        assert idle_s <= after < idle_s + 20
        assert prefect_server._recorded() is None  # its record went with it
        log = (tmp_path / "prefect" / "local-server" / "server.log").read_text()
        assert "stopping: no API request" in log, log
    finally:
        _kill_group(server.pid)


def test_leftovers_names_a_process_of_this_session_still_running():
    sleeper = subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER: "test-leftovers"})
    try:
        # Popen may return before the kernel has laid out the new program's environment (a
        # vfork'd parent resumes as exec releases the old memory), when /proc/<pid>/environ
        # still reads empty: a fresh process gets a moment to show it.
        deadline = time.monotonic() + 5
        while not (found := leftovers("test-leftovers")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(f.pid, f.command) for f in found] == [(sleeper.pid, "sleep 60")]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert leftovers("test-leftovers") == []


# A benchmark in miniature: a child it stops in `finally`, another atexit stops.
_KILLED_BENCH = """
import atexit, subprocess, sys, time
from iamc.serve import exit_on_sigterm
exit_on_sigterm()
by_finally = subprocess.Popen(["sleep", "60"])
by_atexit = subprocess.Popen(["sleep", "61"])
atexit.register(by_atexit.kill)
try:
    print(by_finally.pid, by_atexit.pid, flush=True)
    time.sleep(60)
finally:
    by_finally.kill()
"""


def test_a_process_ended_by_sigterm_stops_what_it_started():
    bench = subprocess.Popen(
        [sys.executable, "-c", _KILLED_BENCH], stdout=subprocess.PIPE, text=True
    )
    children = [int(pid) for pid in bench.stdout.readline().split()]
    try:
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        assert sorted(_wait_gone(children, timeout=10)) == sorted(children)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
