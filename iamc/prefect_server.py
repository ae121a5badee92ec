"""One local Prefect server for every `iamc` command: started by the first, reused by the rest.

Without it each step command starts Prefect's temporary API server for itself (~10 s, and it
may time out on a loaded machine) and its runs vanish with it. With it a command's overhead is
its imports, and CLI runs show in the Prefect UI where operators look. ``PREFECT_API_URL``
(your own server) always wins; ``IAMC_LOCAL_PREFECT_SERVER=off`` keeps the temporary one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from domain.errors import ServeError

DEFAULT_PORT = 4200  # Prefect's own default: the UI where operators expect it
_STATE_FILE = "iamc-local-server.json"


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


def running() -> LocalServer | None:
    """The local server this Prefect home started, if it is still up and answering."""
    try:
        server = LocalServer(**json.loads(_state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return server if _alive(server.pid) and _healthy(server.api_url) else None


def _free_port() -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
            return DEFAULT_PORT
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def start(console: Console) -> LocalServer:
    """Start the local server in the background (it outlives this command) and wait for it.

    Raises:
        ServeError: It did not become healthy in time.
    """
    from iamc.serve import start_server

    port = _free_port()
    home = _prefect_home() / "local-server"
    console.print(
        f"starting a local Prefect server on 127.0.0.1:{port} (once: later commands reuse it, "
        "'iamc server stop' ends it)…",
        highlight=False,
    )
    process, api_url = start_server(port, home)
    server = LocalServer(pid=process.pid, port=port, api_url=api_url, home=str(home))
    _state_path().parent.mkdir(parents=True, exist_ok=True)
    _state_path().write_text(json.dumps(asdict(server)))
    return server


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
    if server is None:
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
    return server.api_url


def stop() -> LocalServer | None:
    """Stop the local server if it runs; returns what was stopped."""
    import signal

    try:
        server = LocalServer(**json.loads(_state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if _alive(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
    _state_path().unlink(missing_ok=True)
    return server
