"""moto's server with the lookups it repeats on every request done once per process.

Profiles of the sandbox under ``iamc inventory`` (py-spy, GIL samples) put about a fifth of its
CPU in two lookups whose answers never change while it runs: which backend serves a host
(moto lists its package directory on disk and tries its URL patterns) and which actions a
response class has (``inspect.getmembers`` over the class). Both are cached here; every
answer is moto's own.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

# The moto version the method-name cache was written against: its test fails when moto moves.
PATCHED_MOTO_VERSION = "5.2.5"

_patch_lock = threading.Lock()


class CachedDispatcher(DomainDispatcherApplication):
    """moto's host dispatcher, remembering each host's backend.

    ``get_backend_for_host`` depends on the host alone (moto's installed modules and its
    static URL patterns), so its first answer for a host is its answer for good.
    """

    def __init__(self, create_app: Callable[[Any], Any]):
        super().__init__(create_app)
        self._backend_of_host: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        try:
            return self._backend_of_host[host]
        except KeyError:
            backend = self._backend_of_host[host] = super().get_backend_for_host(host)
            return backend


def cache_action_names() -> None:
    """Make ``BaseResponse.call_action`` find a class's action methods once per class.

    moto 5.2.5 calls ``moto.core.utils.method_names_from_class`` (``inspect.getmembers`` over
    the whole response class, ~0.2 ms) on every request, to check that the action is a
    method. No public hook replaces that lookup, so this rebinds the name in
    ``moto.core.responses`` to a cached copy; response classes do not gain or lose
    methods while serving. Idempotent. ``tests/sandbox/test_sandbox_moto_speedups.py``
    fails if moto stops calling the function by that name.
    """
    from moto.core import responses

    with _patch_lock:
        current = responses.method_names_from_class
        if getattr(current, "__wrapped__", None) is not None:
            return
        cached = functools.cache(current)

        @functools.wraps(current)
        def method_names_from_class(clazz: object) -> list[str]:
            # A copy: callers may not mutate the cached list.
            return list(cached(clazz))

        responses.method_names_from_class = method_names_from_class
