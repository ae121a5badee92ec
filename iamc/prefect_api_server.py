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

Run as ``python -m iamc.prefect_api_server --host 127.0.0.1 --port N``, in place of ``prefect
server start`` (which runs ``create_app(final=True)`` under uvicorn the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    # Deferred: the tests and the fork server import this module for its middleware; Prefect's
    # server app is for the server process only.
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    print(f"Prefect server (iamc) on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(
        RetryBusyDatabase(create_app(final=True)),
        host=args.host,
        port=args.port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=PREFECT_SERVER_LOGGING_LEVEL.value().lower(),
    )


if __name__ == "__main__":
    main()
