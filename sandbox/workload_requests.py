"""Signed requests the sandbox sends to itself for a playback: each stamped with the user agent,
source address and time of the runtime it plays (``X-Forwarded-For``, ``X-Iamc-Event-Time``,
honoured from loopback only; see ``Strictness.forwarded_for``)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

REGION = "us-east-1"
# One playback or switch at a time: the stamp below is shared by the clients.
PLAYBACK_LOCK = threading.Lock()


class SelfRequests:
    """boto3 clients of the sandbox's own endpoint, by credentials and service."""

    def __init__(self, url: str):
        self.url = url
        self.session = boto3.Session(region_name=REGION)
        self._clients: dict[tuple[str, str], Any] = {}
        self._stamp: dict[str, str] = {}

    def _client(self, credentials: dict[str, str | None], service: str) -> Any:
        cache_key = (str(credentials.get("aws_access_key_id")), service)
        if cache_key not in self._clients:
            client = self.session.client(
                service,
                endpoint_url=self.url,
                region_name=REGION,
                config=Config(retries={"mode": "standard", "max_attempts": 1}),
                **credentials,
            )
            client.meta.events.register("before-send", self._apply_stamp)
            self._clients[cache_key] = client
        return self._clients[cache_key]

    def _apply_stamp(self, request: Any, **_: Any) -> None:
        for header, value in self._stamp.items():
            request.headers[header] = value

    def call(
        self,
        credentials: dict[str, str | None],
        service: str,
        operation: str,
        params: dict[str, Any],
        *,
        agent: str,
        address: str,
        when: datetime | None = None,
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Make one call; returns (the answer, None) or (None, the error code).

        Args:
            credentials: ``aws_access_key_id``/``aws_secret_access_key``/``aws_session_token``;
                all None for an unsigned call (AssumeRoleWithWebIdentity).
        """
        from botocore import UNSIGNED

        if all(v is None for v in credentials.values()):
            client = self.session.client(
                service,
                endpoint_url=self.url,
                region_name=REGION,
                config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
            )
            client.meta.events.register("before-send", self._apply_stamp)
        else:
            client = self._client(credentials, service)
        self._stamp = {"User-Agent": agent, "X-Forwarded-For": address}
        if when is not None:
            self._stamp["X-Iamc-Event-Time"] = when.isoformat()
        method = getattr(client, xform_name(operation))
        try:
            return method(**params), None
        except ClientError as err:
            return None, err.response["Error"]["Code"]
        except BotoCoreError as err:
            return None, type(err).__name__
        finally:
            self._stamp = {}
