"""GetAccessKeyLastUsed: moto's answer, byte for byte, found by key id rather than by a scan."""

from __future__ import annotations

import re
from typing import Any

import pytest
from moto.iam.models import IAMBackend
from werkzeug.test import Client

from sandbox.server import Sandbox

ACCOUNT = "123456789012"  # moto's default account, where the "testing" credentials land


def _ask(app: Any, key_id: str, caller_key: str = "testing") -> tuple[int, str]:
    """GetAccessKeyLastUsed straight into ``app`` (the strict layer, or moto under it)."""
    response = Client(app).post(
        "/",
        data=f"Action=GetAccessKeyLastUsed&Version=2010-05-08&AccessKeyId={key_id}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={caller_key}/20260101/us-east-1/iam/"
            "aws4_request, SignedHeaders=host, Signature=0",
            "X-Moto-Account-Id": ACCOUNT,
        },
    )
    # The request id is fresh on every answer.
    body = re.sub(r"<RequestId>[^<]*</RequestId>", "", response.get_data(as_text=True))
    return response.status_code, body


@pytest.fixture
def keys(sandbox: Sandbox, client) -> dict[str, str]:
    iam = client("iam")
    out = {}
    for name in ("kl-unused", "kl-used"):
        iam.create_user(UserName=name)
        out[name] = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    gone = iam.create_access_key(UserName="kl-unused")["AccessKey"]["AccessKeyId"]
    iam.delete_access_key(UserName="kl-unused", AccessKeyId=gone)
    out["deleted"] = gone
    out["unknown"] = "AKIAIOSFODNN7EXAMPLE"
    yield out
    for name in ("kl-unused", "kl-used"):
        for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName=name)


def test_answers_as_moto_does(sandbox: Sandbox, keys: dict[str, str]) -> None:
    assert sandbox.middleware is not None
    # Signed by kl-used's key: that key now has a last use.
    _ask(sandbox.middleware, keys["kl-unused"], caller_key=keys["kl-used"])
    for key_id in keys.values():
        ours, moto_s = _ask(sandbox.middleware, key_id), _ask(sandbox.middleware.app, key_id)
        assert ours == moto_s
    assert "<ServiceName>iam</ServiceName>" in _ask(sandbox.middleware, keys["kl-used"])[1]
    assert _ask(sandbox.middleware, keys["deleted"])[0] == 404
    # A key asking about itself sees this very call, as moto (which marks it first) shows it.
    status, body = _ask(sandbox.middleware, keys["kl-unused"], caller_key=keys["kl-unused"])
    assert status == 200 and "<ServiceName>iam</ServiceName>" in body


def test_finds_the_key_without_scanning_every_user(
    sandbox: Sandbox, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[int] = []
    original = IAMBackend.get_all_access_keys_for_all_users

    def counting(self: IAMBackend) -> Any:
        scans.append(1)
        return original(self)

    monkeypatch.setattr(IAMBackend, "get_all_access_keys_for_all_users", counting)
    assert _ask(sandbox.middleware, keys["kl-used"])[0] == 200
    assert scans == []
