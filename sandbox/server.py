"""The sandbox server: moto's WSGI app behind the strictness middleware, on a local port."""

from __future__ import annotations

import io
import logging
import threading
from types import TracebackType
from typing import Any

from domain.errors import SandboxError
from sandbox.strict import StrictMiddleware
from sandbox.strict_settings import Strictness

log = logging.getLogger(__name__)

REGION = "us-east-1"
# moto accepts any credentials; these map to its default (management) account 123456789012.
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a placeholder moto accepts, not a secret


def _load_managed_policies(on: bool) -> bool:
    """Switch moto's loading of AWS-managed policies; returns the previous setting.

    moto decides when it creates an account's IAM backend, from its user config or
    ``MOTO_IAM_LOAD_MANAGED_POLICIES`` (moto/settings.py). The sandbox sets the config, which
    no test fixture's environment juggling can undo while it serves; it is process-wide, so
    ``stop()`` puts the old value back.
    """
    from moto.core.config import default_user_config

    iam_config = default_user_config.setdefault("iam", {})
    previous = bool(iam_config.get("load_aws_managed_policies", False))
    iam_config["load_aws_managed_policies"] = on
    return previous


def _quiet_handler() -> type:
    """moto's request handler: access log at DEBUG, and connections kept alive as AWS does.

    werkzeug closes every connection ("Connection: close"), because http.server cannot drain
    a body the app left unread before the next request line. AWS endpoints keep HTTP/1.1
    connections open and botocore reuses them (urllib3's pool), so a sandbox that closes them
    makes every call pay a TCP connect on the client and a new serving thread here. Reading
    the whole body before the app runs makes keep-alive safe.
    """
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        # An idle kept-alive connection holds a serving thread: let it go after a while.
        timeout = 120
        # Buffer the response until werkzeug flushes it after the body: one send for headers
        # and body rather than two (each a syscall, and a wake-up of the client).
        wbufsize = -1
        # A response larger than the buffer still goes out in several writes: without
        # TCP_NODELAY a kept-alive connection would wait on the client's delayed ACK (~40 ms).
        disable_nagle_algorithm = True
        _body_read = False

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            log.debug("%s %s -> %s", self.command, self.path, code)

        def log_error(self, format: str, *args: Any) -> None:
            # An idle kept-alive connection reaching `timeout` is how it is meant to end
            # (http.server reports it as "Request timed out"); no request failed.
            if format.startswith("Request timed out"):
                log.debug("idle connection closed: " + format, *args)
                return
            super().log_error(format, *args)

        def make_environ(self) -> dict[str, Any]:
            environ = super().make_environ()
            self._body_read = False
            if environ.get("wsgi.input_terminated"):
                return environ  # chunked: werkzeug dechunks it; the connection closes
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return environ
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
            self._body_read = True
            # After the response werkzeug discards whatever else the socket holds, which on a
            # kept-alive connection is the next request: let it discard nothing instead.
            self.rfile = io.BytesIO()
            return environ

        def run_wsgi(self) -> None:
            socket_file = self.rfile
            try:
                super().run_wsgi()
            finally:
                self.rfile = socket_file

        def send_header(self, keyword: str, value: str) -> None:
            if (
                keyword.lower() == "connection"
                and value.lower() == "close"
                and self._body_read
                and not self.close_connection
            ):
                return
            super().send_header(keyword, value)

    return QuietHandler


class Sandbox:
    """A strict moto server on ``host:port`` (0 picks a free port), served from a thread.

    moto keeps its state in module globals, so every Sandbox in one process shares one AWS.

    Example:
        with Sandbox() as sandbox:
            iam = boto3.client("iam", endpoint_url=sandbox.url, ...)
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, strictness: Strictness | None = None
    ):
        self.host = host
        self.port = port
        self.strictness = strictness or Strictness()
        self.middleware: StrictMiddleware | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._managed_policies_before: bool | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise SandboxError("the sandbox is not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> str:
        """Start serving in a background thread and return the endpoint URL.

        Raises:
            SandboxError: The port is taken or moto can't be loaded.
        """
        self._managed_policies_before = _load_managed_policies(True)
        try:
            from moto.moto_server.werkzeug_app import create_backend_app
            from werkzeug.serving import make_server

            from sandbox.moto_speedups import (
                CachedDispatcher,
                cache_action_names,
                share_aws_managed_policy_data,
            )
        except ImportError as err:  # pragma: no cover - moto[server] is a dependency
            raise SandboxError(f"moto's server is not installed: {err}") from err
        cache_action_names()
        share_aws_managed_policy_data()
        app = CachedDispatcher(create_backend_app)
        self.middleware = StrictMiddleware(app, self.strictness)
        try:
            self._server = make_server(
                self.host,
                self.port,
                self.middleware,
                threaded=True,
                request_handler=_quiet_handler(),
            )
        except OSError as err:
            raise SandboxError(f"cannot listen on {self.host}:{self.port}: {err}") from err
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="iamc-sandbox", daemon=True
        )
        self._thread.start()
        log.info("sandbox serving on %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving and wait for the server thread; safe to call twice."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None
        if self._managed_policies_before is not None:
            _load_managed_policies(self._managed_policies_before)
            self._managed_policies_before = None

    def reset(self, seed: int | None = None) -> None:
        """Forget all AWS state: moto's, and what the strict layer keeps beside it (recorded
        calls, async requests, service-specific credentials, CloudTrail events, the clock's
        offset); re-seed ids.

        Args:
            seed: Seed moto's random source so the ids that follow are the same on every run.
        """
        from moto.core.base_backend import BackendDict
        from moto.moto_api._internal import mock_random

        BackendDict.reset()
        if seed is not None:
            mock_random.seed(seed)
        if self.middleware is not None:
            self.middleware.recorder.reset()
            self.middleware.reset_state()

    def env(self) -> dict[str, str]:
        """The environment a shell or child process needs to use this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
