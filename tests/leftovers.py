"""Which processes a test session started are still running: each carries the session's marker.

Every process the suite starts inherits ``IAMC_TEST_SESSION`` (set once, in the controller,
before xdist starts its workers): test processes, Prefect servers, sandboxes, `iamc` commands,
fork servers and what they start. Whatever still carries it once the session has stopped its
own is a leftover, read from ``/proc/<pid>/environ`` (the environment a process was started
with).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

MARKER = "IAMC_TEST_SESSION"


@dataclass(frozen=True)
class Leftover:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}: {self.command}"


def _marked(pid_dir: Path, session: str) -> bool:
    try:
        environ = (pid_dir / "environ").read_bytes()
    except OSError:  # gone meanwhile, or another user's
        return False
    return f"{MARKER}={session}".encode() in environ.split(b"\0")


def _command(pid_dir: Path) -> str:
    try:
        return (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _zombie(pid_dir: Path) -> bool:
    try:
        # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces or parens).
        return (pid_dir / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def leftovers(session: str, exclude: tuple[int, ...] = ()) -> list[Leftover]:
    """The running processes started with ``IAMC_TEST_SESSION=session`` (but ``exclude``)."""
    found = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) in exclude:
            continue
        if _marked(pid_dir, session) and not _zombie(pid_dir):
            found.append(Leftover(int(pid_dir.name), _command(pid_dir).strip()))
    return found


def wait_for_leftovers(session: str, grace_s: float, exclude: tuple[int, ...]) -> list[Leftover]:
    """The leftovers still running after up to ``grace_s`` seconds (processes ending as the
    session ends, such as test workers, get that long)."""
    deadline = time.monotonic() + grace_s
    while True:
        found = leftovers(session, exclude)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def end(found: list[Leftover]) -> None:
    """Stop leftovers (they carry this session's marker: this session started them)."""
    for leftover in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leftover.pid, signal.SIGKILL)
