"""moto's server with the work it repeats on every request or account done once per process."""

# Profiles of the sandbox under ``iamc inventory`` (py-spy, GIL samples) put about a fifth of its
# CPU in two lookups whose answers never change while it runs: which backend serves a host
# (moto lists its package directory on disk and tries its URL patterns) and which actions a
# response class has (``inspect.getmembers`` over the class). Profiles of seeding put a third of
# it in parsing moto's table of AWS-managed policies, again for every account's IAM backend.
# All three are done once here; every answer is moto's own.

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from datetime import datetime
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


@functools.cache
def _aws_managed_policy_fields() -> tuple[tuple[str, dict[str, Any]], ...]:
    """moto's AWS-managed policies as ``AWSManagedPolicy.from_data`` reads them, read once.

    The values are immutable (strings, datetimes), so every account's policies may share them.
    """
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return tuple(
        (
            name,
            {
                "default_version_id": data.get("DefaultVersionId"),
                "path": data.get("Path"),
                "document": json.dumps(data.get("Document")),
                "create_date": datetime.fromisoformat(data["CreateDate"]),
                "update_date": datetime.fromisoformat(data["UpdateDate"]),
            },
        )
        for name, data in json.loads(aws_managed_policies_data).items()
    )


def share_aws_managed_policy_data() -> None:
    """Make each new IAM backend build its AWS-managed policies from data parsed once.

    moto 5.2.5's ``IAMBackend._init_aws_policies`` parses its ~1,600-policy JSON table and
    serializes every document again for each account (~65 ms), and the sandbox makes a backend
    per account and per reset. Each backend still gets its own policy objects, made in the same
    order (so ids drawn from moto's seeded random source stay the same), with moto's own
    constructor. Idempotent. ``tests/sandbox/test_sandbox_moto_speedups.py`` compares the result
    with moto's own.
    """
    from moto.iam import models

    with _patch_lock:
        if getattr(models.IAMBackend._init_aws_policies, "shares_parsed_data", False):
            return

        def _init_aws_policies(self: models.IAMBackend) -> list[models.ManagedPolicy]:
            if not models.load_iam_aws_managed_policies():
                return []
            return [
                models.AWSManagedPolicy(
                    name, account_id=self.account_id, region=self.region_name, **fields
                )
                for name, fields in _aws_managed_policy_fields()
            ]

        _init_aws_policies.shares_parsed_data = True  # type: ignore[attr-defined]
        models.IAMBackend._init_aws_policies = _init_aws_policies  # type: ignore[method-assign]
