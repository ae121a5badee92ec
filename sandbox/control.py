"""A small client for the sandbox's ``/_iamc/*`` control endpoints, usable from any process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from domain.errors import SandboxError


class SandboxControl:
    """Read the call recorder and change the strictness of a running sandbox.

    Args:
        url: The sandbox endpoint, e.g. ``http://127.0.0.1:5123``.
    """

    def __init__(self, url: str, timeout: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise SandboxError(f"not an http(s) sandbox URL: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(
        self, method: str, path: str, payload: Any = None, timeout: float | None = None
    ) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise SandboxError(f"{method} {path} failed: HTTP {err.code}: {detail}") from err
        except OSError as err:
            raise SandboxError(f"cannot reach the sandbox at {self.url}: {err}") from err

    def calls(self) -> dict[str, Any]:
        """Counts so far: ``calls``/``throttled``/``errors`` keyed ``service:Operation``,
        ``by_account``, ``total``, ``throttled_total``, and ``peak_per_second``
        (``{account: {family: the most requests in any one second}}``)."""
        return self._request("GET", "/_iamc/calls")

    def reset_calls(self) -> None:
        self._request("POST", "/_iamc/calls/reset", {})

    def config(self) -> dict[str, Any]:
        return self._request("GET", "/_iamc/config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change strictness settings; returns them all.

        ``throttle=True`` means the default rates; ``throttle={}`` switches throttling off.
        The settings are :class:`sandbox.strict_settings.Strictness`'s.
        """
        return self._request("POST", "/_iamc/config", settings)

    def fail_next_assignment(
        self,
        account_id: str,
        permission_set_arn: str,
        reason: str = "Injected failure",
        operation: str = "create",
    ) -> None:
        """Make the next CreateAccountAssignment (``operation="delete"``:
        DeleteAccountAssignment) for this account and permission set end FAILED."""
        self._request(
            "POST",
            "/_iamc/faults",
            {
                "account_id": account_id,
                "permission_set_arn": permission_set_arn,
                "reason": reason,
                "operation": operation,
            },
        )

    def clock(self) -> dict[str, Any]:
        """The sandbox's clock: ``now`` (ISO 8601, UTC) and ``offset_seconds`` from real time."""
        return self._request("GET", "/_iamc/clock")

    def shift_clock(self, seconds: float) -> datetime:
        """Move the sandbox's clock forward (or back, if negative) by ``seconds``.

        CloudTrail event times, the 90-day LookupEvents window, access keys' last-used dates
        and new service-specific credentials' dates follow this clock; moto's own dates don't.

        Returns:
            The sandbox's new now.
        """
        answer = self._request("POST", "/_iamc/clock", {"advance_seconds": seconds})
        return datetime.fromisoformat(answer["now"])

    def reset_clock(self) -> None:
        """Put the sandbox's clock back on real time."""
        self._request("POST", "/_iamc/clock", {"offset_seconds": 0})

    def record_console_login_failure(
        self,
        account_id: str,
        user_name: str,
        *,
        event_time: datetime | None = None,
        source_ip: str | None = None,
        user_agent: str | None = None,
        mfa_used: bool = False,
    ) -> dict[str, Any]:
        """Record a failed console sign-in of an IAM user in the account's CloudTrail.

        Args:
            account_id: The account the user lives in.
            user_name: The IAM user who failed to sign in.
            event_time: When it happened (timezone-aware); the sandbox's now if omitted.
            source_ip: The sign-in's source address.
            user_agent: The browser's user agent.
            mfa_used: Whether the sign-in used MFA.

        Returns:
            The event as LookupEvents returns it (``EventId``, ``CloudTrailEvent``, …).
        """
        payload: dict[str, Any] = {
            "account_id": account_id,
            "user_name": user_name,
            "mfa_used": mfa_used,
        }
        if event_time is not None:
            payload["event_time"] = event_time.isoformat()
        if source_ip:
            payload["source_ip"] = source_ip
        if user_agent:
            payload["user_agent"] = user_agent
        return self._request("POST", "/_iamc/trail/console-login", payload)

    def manifest(self) -> dict[str, Any]:
        """The seed manifest of the running sandbox (``iamc sandbox up`` publishes it)."""
        return self._request("GET", "/_iamc/manifest")

    def play_workload_usage(
        self,
        *,
        days: int = 14,
        rounds: int = 4,
        accounts: list[str] | None = None,
        manifest: dict[str, Any] | None = None,
        timeout: float = 300.0,
    ) -> dict[str, Any]:
        """Play the seeded workload users' key usage as real signed requests, each as its
        runtime would make them (user agent, source address, services), ``rounds`` times
        spread over the past ``days`` days; CloudTrail records them and the keys' last-used
        dates move. Users already switched to a role are not played.

        Args:
            days: How far back the first round runs.
            rounds: Rounds per workload user (the last within the last hour).
            accounts: Only these accounts.
            manifest: The seed manifest, when the sandbox was not given one (``iamc sandbox
                up`` gives it); without either, users are known by the seed's names.

        Returns:
            ``played``: per user ``account_id``, ``user``, ``runtime``, ``access_key``
            (masked), ``calls``, ``errors``, ``user_agents``, ``source_ips``; ``noise``: the
            scanner's probe; ``unplaceable``: the one user nobody can place.
        """
        payload: dict[str, Any] = {"days": days, "rounds": rounds}
        if accounts:
            payload["accounts"] = accounts
        if manifest:
            payload["manifest"] = manifest
        return self._request("POST", "/_iamc/workloads/play", payload, timeout=timeout)

    def workload_runtimes(self) -> list[dict[str, Any]]:
        """Which runtime each seeded workload user is (or was) played as:
        ``[{account_id, user, runtime, access_key}]``, runtime as ``domain.workloads.Runtime``."""
        return self._request("GET", "/_iamc/workloads/runtimes")["workloads"]

    def switch_workload(
        self,
        account_id: str,
        user: str,
        runtime: str,
        repository: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Play the owner moving ``user``'s workload onto its replacement role
        (``domain.workloads.replacement_role_arn``): the runtime assumes the role, its trust
        evaluated as STS does, then makes a few calls with the role's credentials; the user's
        key is not played again.

        Args:
            account_id: The workload's account.
            user: The workload user.
            runtime: A ``domain.workloads.Runtime`` value.
            repository: ``OWNER/NAME`` for GitHub Actions and Terraform (OIDC token's ``sub``).
            overrides: ``ref``, ``audience`` (the token), ``source_account``, ``source_arn``
                (service principals; Roles Anywhere's trust anchor), ``vendor_account``,
                ``external_id`` (vendor), ``role_name``.

        Returns:
            ``switched``, ``role_arn``, ``assumed_by``, ``calls``.

        Raises:
            SandboxError: The switch was refused (no role, or its trust does not allow the
                runtime): the message names why.
        """
        payload = {"account_id": account_id, "user": user, "runtime": runtime, **overrides}
        if repository:
            payload["repository"] = repository
        return self._request("POST", "/_iamc/workloads/switch", payload, timeout=60.0)

    def play_user_usage(
        self,
        account_id: str,
        user: str,
        calls: list[tuple[str, str]] | list[dict[str, Any]] | None = None,
        *,
        days_ago: float = 1,
    ) -> dict[str, Any]:
        """Play a person's own use of AWS: real signed requests with ``user``'s active access
        key, backdated ``days_ago`` days (inside the least-privilege window), recorded in
        CloudTrail and in IAM's service-last-accessed data as any request is.

        Args:
            account_id: The user's account.
            user: The IAM user (a person, with an active key).
            calls: ``(service, operation)`` pairs (boto3 service names, API operation names,
                e.g. ``("s3", "ListBuckets")``), or dicts with ``service``, ``operation`` and
                optional ``params`` and ``days_ago``; default: S3 ListBuckets, EC2
                DescribeInstances and STS GetCallerIdentity.
            days_ago: How far back the calls happened (each dict may name its own).

        Returns:
            ``played``: per call ``call`` ("s3:ListBuckets"), ``event_time`` and ``error``
            (the AWS error code, or None).
        """
        payload: dict[str, Any] = {"account_id": account_id, "user": user, "days_ago": days_ago}
        if calls:
            payload["calls"] = [c if isinstance(c, dict) else list(c) for c in calls]
        return self._request("POST", "/_iamc/usage/play", payload, timeout=60.0)

    def mint_user_key(self, account_id: str, user_name: str) -> tuple[str, str]:
        """An active access key of an IAM user, to call AWS as that person (its existing
        active key, else one made in moto's backend, which CloudTrail does not record).

        Returns:
            (access key id, secret access key).

        Raises:
            SandboxError: No such user, or it holds two inactive keys already.
        """
        answer = self._request(
            "POST", "/_iamc/users/key", {"account_id": account_id, "user_name": user_name}
        )
        return answer["access_key_id"], answer["secret_access_key"]

    def mfa_serial(self, account_id: str, user_name: str) -> str | None:
        """The serial number (ARN) of the user's MFA device, to pass as AssumeRole's
        ``SerialNumber`` (with any six digits as ``TokenCode``); None without one.

        Raises:
            SandboxError: No such user.
        """
        answer = self._request(
            "POST", "/_iamc/users/mfa", {"account_id": account_id, "user_name": user_name}
        )
        serials = answer["mfa_serials"]
        return serials[0] if serials else None
