"""What the strict layer's modules share: one identified AWS call and the replies they build."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

# Services that speak the query protocol (form body, XML answers); the others speak JSON 1.1.
QUERY_SERVICES = frozenset({"iam", "sts"})

XML_NAMESPACE = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
}


@dataclass
class Call:
    """One AWS request the middleware identified: who (account), what (family:Operation), where."""

    family: str
    operation: str
    account_id: str
    region: str
    body: bytes
    environ: dict[str, Any] = field(repr=False, default_factory=dict)
    access_key: str = ""
    scope: str = ""  # the SigV4 signing name, e.g. "sso" for sso-admin

    @property
    def key(self) -> str:
        return f"{self.family}:{self.operation}"

    @property
    def is_query(self) -> bool:
        return self.family in QUERY_SERVICES

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def params(self) -> dict[str, Any]:
        """The request's parameters, whichever protocol carried them."""
        if self.is_query:
            return {k: v for k, v in self.form().items() if k not in ("Action", "Version")}
        try:
            loaded = self.json()
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}


class Reply:
    """A complete WSGI response built by the middleware."""

    def __init__(self, status: int, body: bytes, content_type: str, extra: dict[str, str]):
        self.status, self.body, self.content_type, self.extra = status, body, content_type, extra

    def __call__(self, start_response: Callable[..., Any]) -> list[bytes]:
        reason = {
            200: "OK",
            400: "Bad Request",
            403: "Forbidden",
            404: "Not Found",
            409: "Conflict",
        }
        headers = [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *self.extra.items(),
        ]
        start_response(f"{self.status} {reason.get(self.status, 'Error')}", headers)
        return [self.body]

    @property
    def error_code(self) -> str | None:
        """The AWS error code of an error reply (XML ``<Code>`` or JSON ``__type``)."""
        if self.status < 400:
            return None
        return error_code_of(self.body)


def error_code_of(body: bytes) -> str | None:
    text = body.decode(errors="replace")
    if "<Code>" in text:
        return text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    try:
        loaded = json.loads(text)
    except ValueError:
        return None
    if isinstance(loaded, dict) and loaded.get("__type"):
        return str(loaded["__type"]).rsplit("#", 1)[-1]
    return None


def error_message_of(body: bytes) -> str | None:
    text = body.decode(errors="replace")
    if "<Message>" in text:
        return text.split("<Message>", 1)[1].split("</Message>", 1)[0]
    try:
        loaded = json.loads(text)
    except ValueError:
        return None
    if isinstance(loaded, dict):
        return loaded.get("Message") or loaded.get("message")
    return None


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload).encode(), "application/x-amz-json-1.1", {})


def json_error(code: str, message: str, status: int) -> Reply:
    body = json.dumps({"__type": code, "Message": message, "message": message}).encode()
    return Reply(status, body, "application/x-amz-json-1.1", {"x-amzn-ErrorType": code})


def xml_error(family: str, code: str, message: str, status: int) -> Reply:
    namespace = XML_NAMESPACE.get(family, "")
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return Reply(status, body, "text/xml", {})


def error_reply(call: Call, code: str, message: str, status: int) -> Reply:
    """An error in the protocol of the call's service."""
    if call.is_query:
        return xml_error(call.family, code, message, status)
    return json_error(code, message, status)


def query_reply(operation: str, result: dict[str, Any], service: str = "iam") -> Reply:
    """A query-protocol (XML) answer to ``operation``, serialized from botocore's model.

    moto's own serializer does the work, so the XML is what boto3 parses for moto's answers;
    ``result`` may hold moto model objects (their snake_case attributes are picked by name).
    """
    from moto.core.serialize import XFormedAttributePicker, get_serializer_class
    from moto.core.utils import get_service_model

    transformers: dict[str, Any] = {}
    if service == "iam":
        from moto.iam.responses import IamResponse

        transformers = IamResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER
    operation_model = get_service_model(service).operation_model(operation)
    serializer = get_serializer_class(service, "query")(
        operation_model=operation_model,
        value_picker=XFormedAttributePicker(response_transformers=transformers),
    )
    serialized = serializer.serialize(result)
    body = serialized["body"]
    return Reply(
        int(serialized["status_code"]),
        body.encode() if isinstance(body, str) else body,
        "text/xml",
        {},
    )


def iam_backend(account_id: str, region: str = "us-east-1") -> Any:
    """moto's IAM backend of one account (IAM is global: one per partition)."""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    return iam_backends[account_id][get_partition(region)]


def encode_marker(kind: str, offset: int) -> str:
    """An opaque paging Marker the sandbox hands out (``kind`` keeps APIs' markers apart)."""
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode()


def decode_marker(kind: str, marker: str) -> int | None:
    """The offset a Marker of ``kind`` stands for; None for one the sandbox did not make."""
    try:
        text = base64.urlsafe_b64decode(marker.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, offset = text.partition(":")
    if prefix != kind or not offset.isdigit():
        return None
    return int(offset)
