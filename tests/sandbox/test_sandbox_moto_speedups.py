"""moto's per-request lookups, cached by the sandbox: same answers as moto's, computed once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import moto
import pytest
from moto import backends
from moto.core import responses
from moto.core.utils import method_names_from_class
from moto.iam.responses import IamResponse
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sts.responses import TokenResponse

from sandbox.moto_speedups import PATCHED_MOTO_VERSION, CachedDispatcher, cache_action_names
from sandbox.server import Sandbox

HOSTS = [
    None,
    "moto_api",
    "iam.us-east-1.amazonaws.com",
    "sts.us-east-1.amazonaws.com",
    "organizations.us-east-1.amazonaws.com",
    "sso.us-east-1.amazonaws.com",
    "identitystore.us-east-1.amazonaws.com",
    "cloudtrail.eu-west-1.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "iam",
]


def test_dispatcher_answers_as_moto_does() -> None:
    ours = CachedDispatcher(create_backend_app)
    theirs = DomainDispatcherApplication(create_backend_app)
    for _ in range(2):  # the second answer comes from the cache
        assert [ours.get_backend_for_host(h) for h in HOSTS] == [
            theirs.get_backend_for_host(h) for h in HOSTS
        ]


def test_dispatcher_lists_moto_modules_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[int] = []
    original: Callable[[], Any] = backends.list_of_moto_modules

    def counting() -> Any:
        listed.append(1)
        return original()

    monkeypatch.setattr(backends, "list_of_moto_modules", counting)
    dispatcher = CachedDispatcher(create_backend_app)
    for _ in range(5):
        assert dispatcher.get_backend_for_host("iam.us-east-1.amazonaws.com") == "iam"
    assert len(listed) == 1


def test_moto_still_looks_actions_up_by_that_name() -> None:
    # cache_action_names rebinds this global; if moto renames it or stops calling it from
    # call_action, the cache silently does nothing: re-check the patch against the new moto.
    assert moto.__version__ == PATCHED_MOTO_VERSION
    assert "method_names_from_class" in responses.BaseResponse.call_action.__code__.co_names
    assert responses.method_names_from_class.__name__ == "method_names_from_class"


def test_action_names_are_moto_s_and_computed_once(sandbox: Sandbox) -> None:
    # The sandbox fixture has installed the cache.
    cached = responses.method_names_from_class
    assert cached.__wrapped__ is method_names_from_class  # type: ignore[attr-defined]
    for clazz in (IamResponse, TokenResponse):
        first = cached(clazz)
        assert first == method_names_from_class(clazz)
        first.append("not_an_action")  # a caller's copy: the cache keeps moto's list
        assert cached(clazz) == method_names_from_class(clazz)
    cache_action_names()  # idempotent: no second layer
    assert responses.method_names_from_class is cached


def test_action_names_are_looked_up_once_per_class(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Probe(responses.BaseResponse):
        def list_things(self) -> str:
            return ""

    looked_up: list[object] = []
    original = inspect.getmembers

    def counting(clazz: object, predicate: Any = None) -> Any:
        looked_up.append(clazz)
        return original(clazz, predicate)

    monkeypatch.setattr(inspect, "getmembers", counting)
    for _ in range(3):
        assert "list_things" in responses.method_names_from_class(Probe)
    assert looked_up == [Probe]
