"""One local Prefect server for every `iamc` command: started by the first, reused by the rest.

Without it each step command starts Prefect's temporary API server for itself (~10 s, and it
may time out on a loaded machine) and its runs vanish with it. With it a command's overhead is
its imports, and CLI runs show in the Prefect UI where operators look. ``PREFECT_API_URL``
(your own server) always wins; ``IAMC_LOCAL_PREFECT_SERVER=off`` keeps the temporary one.

It is left running for the next command, but not for ever: it ends by itself after
``IAMC_PREFECT_SERVER_IDLE_MINUTES`` (default 60) without an API request, or a few seconds
after its Prefect home is deleted (:mod:`iamc.prefect_api_server`); the next command starts
another.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.console import Console

from domain.errors import ServeError
from iamc.serve import spawn_server, stop_process

DEFAULT_PORT = 4200  # Prefect's own default: the UI where operators expect it
_STATE_FILE = "iamc-local-server.json"
_LOCK_FILE = "iamc-local-server.lock"
# "<pid> <Prefect version>" of the server started last, beside the record rather than in it:
# an older iamc sharing this Prefect home reads the record with no room for new keys.
_VERSION_FILE = "iamc-local-server.prefect-version"
# How long a command waits for a server that is starting (a fresh one is healthy after ~10 s,
# much later on a loaded machine) before it goes on with Prefect's temporary server.
STARTUP_TIMEOUT_S = float(os.environ.get("IAMC_PREFECT_SERVER_STARTUP_TIMEOUT", "120"))


@dataclass
class LocalServer:
    pid: int
    port: int
    api_url: str
    home: str

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _prefect_home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def _state_path() -> Path:
    return _prefect_home() / _STATE_FILE


def _prefect_version() -> str:
    # Package metadata, not `import prefect` (~1 s): this runs before Prefect is imported.
    try:
        return version("prefect")
    except PackageNotFoundError:
        return ""


def _started_by_this_prefect(server: LocalServer) -> bool:
    """Whether ``server`` was started by the Prefect version this process runs."""
    try:
        pid, _, started_by = (_prefect_home() / _VERSION_FILE).read_text().partition(" ")
    except OSError:  # started by an iamc that did not record it
        return False
    return pid == str(server.pid) and started_by.strip() == _prefect_version() != ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as reply:  # noqa: S310
            return reply.status == 200
    except OSError:
        return False


def _recorded() -> LocalServer | None:
    """The server this Prefect home started last, as recorded (it may have gone since)."""
    try:
        return LocalServer(**json.loads(_state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running() -> LocalServer | None:
    """The local server this Prefect home started, if it is still up and answering."""
    server = _recorded()
    # A loaded machine answers slowly: a live process gets 10 s, not a second server.
    if server is None or not _alive(server.pid) or not _healthy(server.api_url, timeout=10):
        return None
    return server


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    """One command at a time decides whether to start the server: two commands that find
    none at once must not start two."""
    path = _prefect_home() / _LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_until_healthy(server: LocalServer, timeout: float) -> bool:
    """Wait for a starting server; False when it died or did not answer in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(server.pid):
            return False
        if _healthy(server.api_url):
            return True
        time.sleep(0.25)
    return False


def start(console: Console, timeout: float | None = None) -> LocalServer:
    """Start the local server in the background (it outlives this command) and wait for it.

    A server another command is starting is waited for, not started twice.

    Raises:
        ServeError: It did not become healthy in ``timeout`` seconds (it is stopped).
    """
    timeout = STARTUP_TIMEOUT_S if timeout is None else timeout
    with _start_lock():
        server = _recorded()
        if server is not None and _alive(server.pid):
            if not _healthy(server.api_url):
                console.print(
                    f"waiting for the local Prefect server (pid {server.pid}) to start…",
                    highlight=False,
                )
            if _wait_until_healthy(server, timeout):
                return server
            raise ServeError(
                f"the local Prefect server (pid {server.pid}) did not answer in {timeout:.0f} s"
            )
        home = _prefect_home() / "local-server"
        try:
            process, api_url = spawn_server(DEFAULT_PORT, home, record_home=_prefect_home())
        except OSError:  # Prefect's port is another server's: any free one
            process, api_url = spawn_server(0, home, record_home=_prefect_home())
        port = int(urllib.parse.urlsplit(api_url).port or 0)
        console.print(
            f"starting a local Prefect server on 127.0.0.1:{port} (once: later commands reuse "
            "it; it ends by itself once unused, or by 'iamc server stop')…",
            highlight=False,
        )
        server = LocalServer(pid=process.pid, port=port, api_url=api_url, home=str(home))
        # Recorded before it answers, so a command started meanwhile waits for this one.
        _state_path().parent.mkdir(parents=True, exist_ok=True)
        _state_path().write_text(json.dumps(asdict(server)))
        (_prefect_home() / _VERSION_FILE).write_text(f"{server.pid} {_prefect_version()}")
        if _wait_until_healthy(server, timeout):
            return server
        stop_process(process)
        _state_path().unlink(missing_ok=True)
        (_prefect_home() / _VERSION_FILE).unlink(missing_ok=True)
        raise ServeError(
            f"the local Prefect server did not answer in {timeout:.0f} s (see {home}/server.log)"
        )


def _claim(server: LocalServer) -> bool:
    """Use the server once (a request that counts, unlike ``/health``), so it does not end
    for idleness between this command's look and its first flow run's request."""
    try:
        with urllib.request.urlopen(f"{server.api_url}/admin/version", timeout=10) as reply:  # noqa: S310
            return reply.status == 200
    except OSError:
        # Ended meanwhile (or ending: it answers 503), or only slow on a loaded machine: a
        # live server that still answers its health check is used, not started twice.
        return _alive(server.pid) and _healthy(server.api_url, timeout=10)


def use_local_server(console: Console) -> str | None:
    """Point this process's flows at the local server, starting it if needed.

    Returns:
        The API URL the flows report to, or None for Prefect's temporary server (switched
        off, or the local one could not start: the command goes on without it, saying so).
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if os.environ.get("IAMC_LOCAL_PREFECT_SERVER", "on").lower() in ("off", "0", "false"):
        return None
    server = running()
    if server is None or not _claim(server):
        try:
            server = start(console)
        except (ServeError, OSError) as err:
            console.print(
                f"[yellow]warning:[/] no local Prefect server ({err}); this command starts a "
                "temporary one of its own",
                highlight=False,
            )
            return None
    os.environ["PREFECT_API_URL"] = server.api_url
    if _started_by_this_prefect(server):
        # The server runs the very Prefect this process imports: its clients' version
        # handshake (GET /admin/version, once per client, with an SSL context built for
        # each) can only agree. Prefect's setting for "a known-compatible server".
        os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")
    return server.api_url


def stop() -> LocalServer | None:
    """Stop the local server if it runs; returns what was stopped."""
    try:
        server = LocalServer(**json.loads(_state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _alive(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
    _state_path().unlink(missing_ok=True)
    (_prefect_home() / _VERSION_FILE).unlink(missing_ok=True)
    return server


def forget(pid: int, home: Path) -> None:
    """Remove the record of the local server ``pid`` from Prefect home ``home`` (the server
    does, as it ends by itself); a record of another server is left alone.

    Without the start lock: a command holding it may be waiting for this very server to
    answer, and no command records a new server while this one's record names a live one.
    """
    try:
        recorded = json.loads((home / _STATE_FILE).read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded == pid:
        (home / _STATE_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        if (home / _VERSION_FILE).read_text().partition(" ")[0] == str(pid):
            (home / _VERSION_FILE).unlink(missing_ok=True)
