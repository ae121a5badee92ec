"""Web identity tokens for the sandbox: GitHub Actions' OIDC token shape, and reading one back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# Signs the sandbox's tokens; the sandbox checks the claims, not the signature.
_SANDBOX_KEY = b"iamc-sandbox-oidc"


def github_token(
    repository: str,
    ref: str = "refs/heads/main",
    audience: str = "sts.amazonaws.com",
    *,
    issued_at: int | None = None,
    lifetime_s: int = 300,
) -> str:
    """A JWT shaped as GitHub Actions' OIDC token for a workflow run (HS256, sandbox key).

    Claims as GitHub issues them ("About security hardening with OpenID Connect"):
    ``sub`` is ``repo:OWNER/NAME:ref:REF``, with ``repository``, ``repository_owner``,
    ``ref``, ``aud``, ``iat``/``nbf``/``exp``.

    Args:
        repository: ``OWNER/NAME``.
        ref: The git ref the workflow runs on.
        audience: ``aud``; ``sts.amazonaws.com`` for configure-aws-credentials.
        issued_at: ``iat`` (epoch seconds); now if omitted.
        lifetime_s: Seconds until ``exp``.
    """
    now = int(time.time()) if issued_at is None else issued_at
    claims = {
        "iss": GITHUB_ISSUER,
        "sub": f"repo:{repository}:ref:{ref}",
        "aud": audience,
        "repository": repository,
        "repository_owner": repository.split("/", 1)[0],
        "ref": ref,
        "ref_type": "branch",
        "event_name": "push",
        "job_workflow_ref": f"{repository}/.github/workflows/deploy.yml@{ref}",
        "runner_environment": "github-hosted",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
    }
    header = {"alg": "HS256", "typ": "JWT", "kid": "iamc-sandbox"}
    signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
    signature = hmac.new(_SANDBOX_KEY, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def token_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified (the sandbox trusts the issuer it is told about), or
    None when the token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
