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


def test_aws_managed_policies_are_moto_s_own_built_from_data_parsed_once(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json as json_module

    from moto.iam import models
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    from sandbox.moto_speedups import share_aws_managed_policy_data

    # The sandbox fixture has installed the shared data; moto's own builds from its table.
    patched = models.IAMBackend._init_aws_policies
    assert patched.shares_parsed_data  # type: ignore[attr-defined]
    share_aws_managed_policy_data()  # idempotent: no second layer
    assert models.IAMBackend._init_aws_policies is patched
    parses: list[int] = []
    real_loads = json_module.loads

    def counting_loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        if text is aws_managed_policies_data:
            parses.append(1)
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json_module, "loads", counting_loads)
    ours = [models.IAMBackend("us-east-1", f"12345678901{n}") for n in range(3)][-1]
    assert len(parses) <= 1  # once per process, for every backend (none if parsed before)

    def fields(policy: models.ManagedPolicy) -> dict[str, Any]:
        versions = [vars(v) | {"create_date": None} for v in policy.versions]
        return vars(policy) | {"id": None, "versions": versions}

    theirs = [
        models.AWSManagedPolicy.from_data(name, "123456789012", "us-east-1", data)
        for name, data in real_loads(aws_managed_policies_data).items()
    ]
    assert len(ours.aws_managed_policies) == len(theirs) > 1000
    assert [fields(p) for p in ours.aws_managed_policies] == [fields(p) for p in theirs]
    # Each account attaches its own copy: counts don't leak between accounts.
    other = models.IAMBackend("us-east-1", "210987654321")
    ours.aws_managed_policies[0].attachment_count += 1
    assert other.aws_managed_policies[0].attachment_count == 0
