"""Runs `iamc` commands for the tests, each in its own process forked from one that imported them.

A CLI test pays ~2.5 s of CPU per `python -m iamc.cli` before the command does anything:
the interpreter, then Prefect, boto3, SQLAlchemy and our flows being imported. This process
imports all of that once; each command then runs in a forked child with its own pid, working
directory, environment, stdin/stdout/stderr and exit code, and exits through the CLI's own
exit path (``iamc.cli.main``, its exit handlers, ``os._exit``), as the console script does.
The test that asked waits for that exit code, or kills the child by its pid.

What a fork cannot change is what was read at import time: Prefect's settings (every
``PREFECT_*`` variable) and the logging set up from them. The tests' side (``IamcRunner`` in
``tests/conftest.py``) therefore sends a command here only when those variables equal this
process's, and runs the real ``python -m iamc.cli`` otherwise (``--verbose``, another Prefect
API, ``iamc sandbox``, which imports moto).

Protocol, one JSON object per line: requests on stdin
``{"argv": [...], "env": {...}, "cwd": "...", "stdout": path, "stderr": path}``; on stdout
``{"ready": pid}`` or ``{"unavailable": reason}`` once, then ``{"started": pid}`` per request
and ``{"exited": pid, "returncode": n}`` when a child ends (negative: killed by that signal).
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import signal
import sys
import threading

# Modules the `iamc` commands import lazily; the `sandbox` and `demo` commands are not served.
_SKIP = {"iamc.screenshots", "iamc.demo", "iamc.commands.rehearse"}


def _send(out: int, message: dict) -> None:
    # One write of one short line: atomic on a pipe, so a reap between two sends can't interleave.
    os.write(out, (json.dumps(message) + "\n").encode())


def _import_commands() -> None:
    # Without --verbose, iamc.cli's root callback sets this before a command imports Prefect,
    # which reads its settings once, at import.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    import flows
    import iamc

    for package in (iamc, flows):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name not in _SKIP:
                importlib.import_module(module.name)


def _reap(out: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(out, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _become_command(request: dict, out: int) -> None:
    """In the forked child: take the request's process context, then run the CLI in it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command's own subprocesses (git, rg)
    os.close(out)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import iamc.cli

    sys.argv = [iamc.cli.__file__, *request["argv"]]
    # As `python -m iamc.cli`: SystemExit or an exception leaves through the interpreter's
    # exit, which runs the exit handlers (iamc.cli ends the process there with os._exit).
    iamc.cli.main()
    sys.exit(0)


def main() -> None:
    out = os.dup(1)
    # Nothing of this process's own goes to the pipe the protocol uses.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        _import_commands()
    except Exception as err:  # the tests then run real subprocesses and say why
        _send(out, {"unavailable": f"import failed: {err!r}"})
        return
    if threading.active_count() != 1:
        # A fork copies only the forking thread; another thread's held locks would hang the child.
        names = [t.name for t in threading.enumerate()]
        _send(out, {"unavailable": f"threads started at import: {names}"})
        return
    # As a step command does after its imports (imports_without_gc): the collector skips them, so a
    # child's collections don't write to (and copy) every page it shares with this process.
    gc.freeze()
    signal.signal(signal.SIGCHLD, lambda *_: _reap(out))
    _send(out, {"ready": os.getpid()})
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _become_command(request, out)
        _send(out, {"started": pid})


if __name__ == "__main__":
    main()
