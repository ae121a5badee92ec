"""The Prefect server process iamc starts: Prefect's API and UI, busy-database answers retried.

Prefect's SQLite database opens write transactions as DEFERRED: one that has read and then
writes while a background service (the event persister, the task-run recorder) commits is
refused at once with SQLITE_BUSY, whatever the busy timeout ("upgrading to a write transaction
is not possible", https://www.sqlite.org/lang_transaction.html). The server rolls the
transaction back and answers 503 (``custom_internal_exception_handler`` in
``prefect/server/api/server.py``), and Prefect's client repeats the request 2**attempt seconds
later: flow runs that followed each other here started ~2 s late in 10 of 24 (0 of 18 with
this). The server now repeats such a request itself after 10 ms, then longer; only if the
database stays busy for ~1.6 s does the client see the 503 and back off as before. Repeating
is what the client does with the same request anyway.

It also ends by itself, so no server is left behind: when no API request came for
``IAMC_PREFECT_SERVER_IDLE_MINUTES`` (default 60; 0: never), when its Prefect home is gone,
and (``--exit-with-parent``) when the process that started it is gone. A flow run talks to
the API all along (states, logs, events), so work keeps it running; ``/api/health`` probes
(``iamc server status``, a command waiting for a server to start) don't count.

Run as ``python -m iamc.prefect_api_server --host 127.0.0.1 --port N``, in place of ``prefect
server start`` (which runs ``create_app(final=True)`` under uvicorn the same way); with
``--fd N`` it serves on a socket its starter bound already (:func:`iamc.serve.spawn_server`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# Prefect's answer to a retryable database error (a JSONResponse: compact JSON).
BUSY_STATUS = 503
BUSY_BODY = b'{"exception_message":"Service Unavailable"}'
# ~1.6 s in all; after that the client's own back-off (2, 4, 8... s) takes over.
RETRY_DELAYS_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)

IDLE_MINUTES_ENV = "IAMC_PREFECT_SERVER_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 60.0
# How often the server looks at its home, its parent and its idle time.
WATCH_EVERY_S = 2.0
# What a request that only asks whether the server is up asks for: not a use.
HEALTH_PATHS = frozenset({"/api/health", "/health"})
# In-flight requests get this long once the server decided to stop (or got SIGTERM) ...
GRACEFUL_SHUTDOWN_S = 10.0
# ... and the whole shutdown this long before the process ends regardless.
HARD_EXIT_AFTER_S = 30.0


class _Attempt:
    """One run of the app for a request: its body replayed, a 503 answer held back."""

    def __init__(self, body: bytes, receive: Receive, send: Send) -> None:
        self._body: bytes | None = body
        self._receive = receive
        self._send = send
        self.held: list[Message] | None = None

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self._receive()  # after the body: the client's disconnect, if any

    async def send(self, message: Message) -> None:
        starts = message["type"] == "http.response.start"
        if self.held is None and starts and message["status"] == BUSY_STATUS:
            self.held = [message]
            return
        if self.held is not None:
            self.held.append(message)
            return
        await self._send(message)

    @property
    def busy(self) -> bool:
        if self.held is None:
            return False
        return b"".join(m.get("body", b"") for m in self.held[1:]) == BUSY_BODY

    async def release(self) -> None:
        for message in self.held or ():
            await self._send(message)


class RetryBusyDatabase:
    """ASGI middleware: an HTTP request Prefect answered "database busy" (503) is run again.

    Args:
        app: Prefect's ASGI application.
        delays: Seconds to wait before each repeat; the last busy answer goes to the client.
    """

    def __init__(self, app: App, delays: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self.app = app
        self.delays = delays

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its whole request
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        for attempt_number, delay in enumerate((*self.delays, None), start=1):
            attempt = _Attempt(body, receive, send)
            try:
                # A copy: routing writes into the scope (a mount's path and root path).
                await self.app(dict(scope), attempt.receive, attempt.send)
            except Exception:
                # Starlette raises the error again once its handler has answered, for the
                # server to log it: a busy answer is repeated, anything else goes out.
                if delay is None or not attempt.busy:
                    await attempt.release()
                    raise
            else:
                if delay is None or not attempt.busy:
                    await attempt.release()
                    return
            log.debug(
                "database busy: %s %s again in %.2f s (attempt %d)",
                scope.get("method"),
                scope.get("path"),
                delay,
                attempt_number,
            )
            await asyncio.sleep(delay)


class Activity:
    """ASGI middleware: when the API was last used. A request or connection (a websocket)
    counts from its start to its end, so the idle time starts when the last one ended;
    health probes don't count. Once the server is ``closing``, new requests get 503.

    Args:
        app: The ASGI application.
        clock: Monotonic seconds.
    """

    def __init__(self, app: App, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.in_flight = 0
        self.last_used = clock()
        self.closing = False

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        if self.closing and scope["type"] == "http":
            # Prefect's client repeats a 503 later, and by then meets no server: a command
            # then starts a new one, as for a server that is gone.
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"the server is stopping"})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last_used = self.clock()

    def idle_for(self) -> float:
        """Seconds since the API was last used (0 while a request or connection is open)."""
        return 0.0 if self.in_flight else self.clock() - self.last_used


def idle_seconds_from_env() -> float | None:
    """The idle period ``IAMC_PREFECT_SERVER_IDLE_MINUTES`` sets, in seconds (None: never).

    Raises:
        ValueError: The setting is not a number of minutes.
    """
    minutes = float(os.environ.get(IDLE_MINUTES_ENV) or DEFAULT_IDLE_MINUTES)
    if minutes < 0:
        raise ValueError(f"{IDLE_MINUTES_ENV} must be >= 0 (0: never idle out), not {minutes}")
    return minutes * 60 if minutes > 0 else None


@dataclass
class Watch:
    """When the server should end by itself, and why.

    Attributes:
        home: Its Prefect home (database, log): gone means nobody can use it any more.
        idle_s: The idle period in seconds, or None to never end for idleness.
        parent: The pid of the process that started it, when it ends with that one.
    """

    home: Path
    idle_s: float | None
    parent: int | None = None

    def reason_to_stop(self, activity: Activity) -> str | None:
        if not self.home.is_dir():
            return f"its Prefect home {self.home} is gone"
        # Once the parent ends, this process is re-parented (to init or a subreaper): unlike
        # polling the parent's pid, this can't be fooled by the pid being reused.
        if self.parent is not None and os.getppid() != self.parent:
            return f"the process that started it ({self.parent}) ended"
        idle = activity.idle_for()
        if self.idle_s is not None and idle >= self.idle_s:
            return f"no API request for {idle / 60:.1f} min ({IDLE_MINUTES_ENV})"
        return None


def _forget_record(record_home: Path | None) -> None:
    """Remove the local server's record of this process, if its Prefect home still holds it."""
    if record_home is None or not record_home.is_dir():
        return
    # Deferred: only a server iamc's step commands started has a record.
    from iamc.prefect_server import forget

    forget(os.getpid(), record_home)


def _serve(
    activity: Activity,
    watch: Watch,
    record_home: Path | None,
    listener: socket.socket | None,
    **config: Any,
) -> None:
    """Run the app under uvicorn until SIGTERM or until ``watch`` says the server should end,
    on ``listener`` if given (else on ``config``'s host and port)."""
    import uvicorn

    class WatchedServer(uvicorn.Server):
        async def serve(self, sockets: Any = None) -> None:
            watching = asyncio.create_task(self._watch())
            try:
                await super().serve(sockets)
            finally:
                watching.cancel()

        async def _watch(self) -> None:
            # In the event loop, as the requests are: no request is counted after the
            # decision, which closes the API to new requests before the listener goes.
            while not self.started and not self.should_exit:
                await asyncio.sleep(0.1)
            activity.last_used = activity.clock()  # idle from when it answers, not before
            while not self.should_exit:
                await asyncio.sleep(WATCH_EVERY_S)
                reason = watch.reason_to_stop(activity)
                if reason is None:
                    continue
                print(f"stopping: {reason}", flush=True)
                activity.closing = True
                _forget_record(record_home)
                # A shutdown stuck on a database whose directory is gone still ends.
                hard_exit = threading.Timer(HARD_EXIT_AFTER_S, os._exit, (0,))
                hard_exit.daemon = True
                hard_exit.start()
                self.should_exit = True

    config = uvicorn.Config(activity, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, **config)
    WatchedServer(config).run(sockets=None if listener is None else [listener])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--record-home",
        type=Path,
        help="the Prefect home whose local-server record names this server (removed at exit)",
    )
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="end when the starting process ends"
    )
    parser.add_argument(
        "--fd", type=int, help="serve on this inherited socket, bound to --host/--port already"
    )
    args = parser.parse_args(argv)
    # Read before Prefect is imported: a bad setting stops the start, with its reason in the log.
    watch = Watch(
        home=Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser(),
        idle_s=idle_seconds_from_env(),
        parent=os.getppid() if args.exit_with_parent else None,
    )

    # Deferred: the tests and the fork server import this module for its middleware; Prefect's
    # server app is for the server process only.
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    print(f"Prefect server (iamc) on http://{args.host}:{args.port}", flush=True)
    activity = Activity(RetryBusyDatabase(create_app(final=True)))
    _serve(
        activity,
        watch,
        args.record_home,
        None if args.fd is None else socket.socket(fileno=args.fd),  # family read from the fd
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower(),
    )


if __name__ == "__main__":
    main()
