"""CloudTrail for the sandbox: what IAM users' keys did, and LookupEvents (moto 5.2.5 lacks it)."""

# The middleware asks :func:`user_key` who signed each request; an ``Inactive`` key is refused
# as AWS refuses it, a quarantined user (the tool's deny-all inline policy) is denied, and every
# call signed by an IAM user's key becomes an event here, with the key's last-used date moved
# as AWS moves it.

from __future__ import annotations

import base64
import binascii
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.wire import Call, Reply, json_error, json_reply

# LookupEvents searches the last 90 days of management events, at most 50 a page
# (CloudTrail API reference, LookupEvents).
RETENTION = timedelta(days=90)
MAX_RESULTS = 50
QUARANTINE_POLICY_NAME = "iamc-quarantine"
LOOKUP_KEYS = (
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
)

# The eventSource of each API family where it is not "<signing name>.amazonaws.com".
_EVENT_SOURCE = {"sso-admin": "sso.amazonaws.com"}
# Global services log to us-east-1 whatever region the client signed for.
_GLOBAL = frozenset({"iam", "organizations"})
_READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Lookup", "Search", "BatchGet", "Head")
# Parameters that name a resource, and the CloudTrail resource type each names.
_RESOURCE_PARAMS = (
    ("UserName", "AWS::IAM::User"),
    ("AccessKeyId", "AWS::IAM::AccessKey"),
    ("GroupName", "AWS::IAM::Group"),
    ("RoleName", "AWS::IAM::Role"),
    ("RoleArn", "AWS::IAM::Role"),
    ("PolicyArn", "AWS::IAM::Policy"),
    ("PermissionSetArn", "AWS::SSO::PermissionSet"),
)
_SECRET_WORDS = ("password", "secret", "token")
# The WSGI environ key where the middleware puts a playback's backdated event time.
EVENT_TIME_KEY = "iamc.event_time"
# ... and the source address a playback names (X-Forwarded-For). Kept apart from REMOTE_ADDR:
# werkzeug's handler reads the previous request's REMOTE_ADDR back on a kept-alive connection.
SOURCE_IP_KEY = "iamc.source_ip"


def source_ip_of(environ: dict[str, Any]) -> str:
    """The request's source address as CloudTrail records it."""
    return environ.get(SOURCE_IP_KEY) or environ.get("REMOTE_ADDR", "")


class Clock:
    """The sandbox's notion of now: real time plus an offset tests move forward."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.offset = timedelta()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset

    def naive_now(self) -> datetime:
        """Now as naive UTC, the way moto keeps its dates."""
        return self.now().replace(tzinfo=None)

    def shift(self, seconds: float) -> datetime:
        with self._lock:
            self.offset += timedelta(seconds=seconds)
        return self.now()

    def set_offset(self, seconds: float) -> datetime:
        with self._lock:
            self.offset = timedelta(seconds=seconds)
        return self.now()


@dataclass
class UserKey:
    """An IAM user's long-term access key that signed a request."""

    account_id: str
    user_name: str
    user_id: str
    user_arn: str
    key: Any  # moto's AccessKey
    quarantined: bool

    @property
    def active(self) -> bool:
        return self.key.status == "Active"


def user_key(account_id: str, access_key_id: str) -> UserKey | None:
    """The IAM user whose key this is, in the account moto resolved the key to, or None."""
    if not access_key_id:
        return None
    from moto.iam.models import iam_backends

    if account_id not in iam_backends:
        return None
    backend = iam_backends[account_id]["aws"]
    key = backend.access_keys.get(access_key_id)
    if key is None or not key.user_name or key.role_arn:
        return None
    user = backend.users.get(key.user_name)
    if user is None:
        return None
    return UserKey(
        account_id=account_id,
        user_name=user.name,
        user_id=user.id,
        user_arn=user.arn,
        key=key,
        quarantined=QUARANTINE_POLICY_NAME in user.policies,
    )


def mark_used(who: UserKey, service: str, region: str, when: datetime) -> None:
    """Move the key's last-used date, service and region, as GetAccessKeyLastUsed shows them."""
    from moto.iam.models import AccessKeyLastUsed

    who.key.last_used = AccessKeyLastUsed(timestamp=when, service=service, region=region)


@dataclass
class TrailEvent:
    seq: int
    event_id: str
    event_name: str
    event_source: str
    event_time: datetime
    region: str
    read_only: bool
    username: str | None = None
    access_key_id: str | None = None
    resources: list[dict[str, str]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    def lookup_view(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "EventId": self.event_id,
            "EventName": self.event_name,
            "ReadOnly": "true" if self.read_only else "false",
            "EventTime": self.event_time.timestamp(),
            "EventSource": self.event_source,
            "Resources": self.resources,
            "CloudTrailEvent": json.dumps(self.record),
        }
        if self.access_key_id:
            out["AccessKeyId"] = self.access_key_id
        if self.username:
            out["Username"] = self.username
        return out

    def matches(self, key: str, value: str) -> bool:
        if key == "EventId":
            return self.event_id == value
        if key == "EventName":
            return self.event_name == value
        if key == "ReadOnly":
            return str(self.read_only).lower() == value.lower()
        if key == "Username":
            return self.username == value
        if key == "EventSource":
            return self.event_source == value
        if key == "AccessKeyId":
            return self.access_key_id == value
        if key == "ResourceType":
            return any(r.get("ResourceType") == value for r in self.resources)
        if key == "ResourceName":
            return any(r.get("ResourceName") == value for r in self.resources)
        return False


def event_source(call: Call) -> str:
    return _EVENT_SOURCE.get(call.family, f"{call.scope or call.family}.amazonaws.com")


def is_read_only(operation: str) -> bool:
    return operation.startswith(_READ_ONLY_PREFIXES)


def resources_of(params: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"ResourceType": kind, "ResourceName": str(params[name])}
        for name, kind in _RESOURCE_PARAMS
        if isinstance(params.get(name), str | int) and params.get(name)
    ]


def _request_parameters(params: dict[str, Any]) -> dict[str, Any] | None:
    kept = {
        k[:1].lower() + k[1:]: v
        for k, v in params.items()
        if not any(word in k.lower() for word in _SECRET_WORDS)
    }
    return kept or None


class Trail:
    """The events of every account, newest last, and the LookupEvents operation over them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, list[TrailEvent]] = {}
        self._seq = 0

    def reset(self) -> None:
        with self._lock:
            self._events.clear()

    def events_of(self, account_id: str) -> list[TrailEvent]:
        """A copy of the account's events, oldest recorded first."""
        with self._lock:
            return list(self._events.get(account_id, []))

    def _add(self, account_id: str, event: TrailEvent) -> TrailEvent:
        with self._lock:
            self._seq += 1
            event.seq = self._seq
            self._events.setdefault(account_id, []).append(event)
        return event

    def record_call(
        self,
        who: UserKey,
        call: Call,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> TrailEvent:
        """Record one API call signed by an IAM user's key (at the playback's time, if any)."""
        when = call.environ.get(EVENT_TIME_KEY) or self.clock.now()
        region = "us-east-1" if call.family in _GLOBAL else call.region
        params = call.params()
        environ = call.environ
        source = event_source(call)
        event_id = str(uuid.uuid4())
        record: dict[str, Any] = {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": who.user_id,
                "arn": who.user_arn,
                "accountId": who.account_id,
                "accessKeyId": who.key.access_key_id,
                "userName": who.user_name,
            },
            "eventTime": _iso(when),
            "eventSource": source,
            "eventName": call.operation,
            "awsRegion": region,
            "sourceIPAddress": source_ip_of(environ),
            "userAgent": environ.get("HTTP_USER_AGENT", ""),
            "requestParameters": None if error_code else _request_parameters(params),
            "responseElements": None,
            "requestID": str(uuid.uuid4()),
            "eventID": event_id,
            "readOnly": is_read_only(call.operation),
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": who.account_id,
            "eventCategory": "Management",
        }
        if error_code:
            record["errorCode"] = error_code
            record["errorMessage"] = error_message or ""
        event = TrailEvent(
            seq=0,
            event_id=event_id,
            event_name=call.operation,
            event_source=source,
            event_time=when,
            region=region,
            read_only=is_read_only(call.operation),
            username=who.user_name,
            access_key_id=who.key.access_key_id,
            resources=resources_of(params),
            record=record,
        )
        return self._add(who.account_id, event)

    def record_role_event(
        self,
        account_id: str,
        event_name: str,
        role_arn: str,
        identity: dict[str, Any],
        *,
        region: str,
        source_ip: str,
        user_agent: str,
        request_parameters: dict[str, Any] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        when: datetime | None = None,
    ) -> TrailEvent:
        """Record an STS AssumeRole* in the role's account, the role as its resource.

        ``identity`` is the caller's CloudTrail ``userIdentity`` (IAMUser, AssumedRole, Root,
        AWSAccount, AWSService or WebIdentityUser).
        """
        when = when or self.clock.now()
        event_id = str(uuid.uuid4())
        record: dict[str, Any] = {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": _iso(when),
            "eventSource": "sts.amazonaws.com",
            "eventName": event_name,
            "awsRegion": region,
            "sourceIPAddress": source_ip,
            "userAgent": user_agent,
            "requestParameters": None if error_code else request_parameters,
            "responseElements": None,
            "requestID": str(uuid.uuid4()),
            "eventID": event_id,
            "readOnly": True,
            "resources": [{"accountId": account_id, "type": "AWS::IAM::Role", "ARN": role_arn}],
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account_id,
            "eventCategory": "Management",
        }
        if identity.get("type") == "AWSService":
            record["sharedEventID"] = str(uuid.uuid4())
        if error_code:
            record["errorCode"] = error_code
            record["errorMessage"] = error_message or ""
        event = TrailEvent(
            seq=0,
            event_id=event_id,
            event_name=event_name,
            event_source="sts.amazonaws.com",
            event_time=when,
            region=region,
            read_only=True,
            username=identity.get("userName"),
            access_key_id=identity.get("accessKeyId") or None,
            resources=[{"ResourceType": "AWS::IAM::Role", "ResourceName": role_arn}],
            record=record,
        )
        return self._add(account_id, event)

    def record_console_login_failure(
        self,
        account_id: str,
        user_name: str,
        *,
        source_ip: str = "198.51.100.7",
        user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
        event_time: datetime | None = None,
        mfa_used: bool = False,
    ) -> TrailEvent:
        """Record a failed console sign-in of an IAM user (a console can't be driven here).

        Shaped as CloudTrail logs one: eventSource signin.amazonaws.com, errorMessage
        "Failed authentication", responseElements.ConsoleLogin "Failure" (CloudTrail user
        guide, "AWS Management Console sign-in events").
        """
        from moto.iam.models import iam_backends

        user = iam_backends[account_id]["aws"].users.get(user_name)
        when = event_time or self.clock.now()
        event_id = str(uuid.uuid4())
        identity: dict[str, Any] = {
            "type": "IAMUser",
            "accountId": account_id,
            "accessKeyId": "",
            "userName": user_name,
        }
        if user is not None:
            identity.update(principalId=user.id, arn=user.arn)
        record = {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": _iso(when),
            "eventSource": "signin.amazonaws.com",
            "eventName": "ConsoleLogin",
            "awsRegion": "us-east-1",
            "sourceIPAddress": source_ip,
            "userAgent": user_agent,
            "errorCode": "Failed authentication",
            "errorMessage": "Failed authentication",
            "requestParameters": None,
            "responseElements": {"ConsoleLogin": "Failure"},
            "additionalEventData": {
                "LoginTo": "https://console.aws.amazon.com/console/home",
                "MobileVersion": "No",
                "MFAUsed": "Yes" if mfa_used else "No",
            },
            "eventID": event_id,
            "readOnly": False,
            "eventType": "AwsConsoleSignIn",
            "managementEvent": True,
            "recipientAccountId": account_id,
            "eventCategory": "Management",
        }
        event = TrailEvent(
            seq=0,
            event_id=event_id,
            event_name="ConsoleLogin",
            event_source="signin.amazonaws.com",
            event_time=when,
            region="us-east-1",
            read_only=False,
            username=user_name,
            resources=[],
            record=record,
        )
        return self._add(account_id, event)

    # -- LookupEvents -----------------------------------------------------------------------

    def lookup_events(self, call: Call) -> Reply:
        params = call.json()
        attributes = params.get("LookupAttributes") or []
        if len(attributes) > 1:
            return json_error(
                "InvalidLookupAttributesException",
                "You cannot specify more than one lookup attribute.",
                400,
            )
        attribute: tuple[str, str] | None = None
        if attributes:
            key = attributes[0].get("AttributeKey")
            value = attributes[0].get("AttributeValue")
            if key not in LOOKUP_KEYS or not value:
                return json_error(
                    "InvalidLookupAttributesException",
                    f"Invalid lookup attribute {key!r}.",
                    400,
                )
            attribute = (key, value)
        max_results = params.get("MaxResults", MAX_RESULTS)
        if not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
            return json_error(
                "InvalidMaxResultsException",
                f"MaxResults must be between 1 and {MAX_RESULTS}.",
                400,
            )
        now = self.clock.now()
        earliest = now - RETENTION
        start = _when(params.get("StartTime")) or earliest
        end = _when(params.get("EndTime")) or now
        if start > end:
            return json_error(
                "InvalidTimeRangeException", "Start time must be before end time.", 400
            )
        start = max(start, earliest)
        after: tuple[float, int] | None = None
        if params.get("NextToken"):
            after = _decode_token(params["NextToken"])
            if after is None:
                return json_error("InvalidNextTokenException", "Invalid NextToken.", 400)
        region = call.region
        with self._lock:
            events = list(self._events.get(call.account_id, []))
        found = [
            e
            for e in events
            if e.region == region
            and start <= e.event_time <= end
            and (attribute is None or e.matches(*attribute))
        ]
        found.sort(key=_newest_first)
        if after is not None:
            found = [e for e in found if _newest_first(e) > after]
        page = found[:max_results]
        answer: dict[str, Any] = {"Events": [e.lookup_view() for e in page]}
        if len(found) > max_results:
            answer["NextToken"] = _encode_token(_newest_first(page[-1]))
        return json_reply(answer)


def _newest_first(event: TrailEvent) -> tuple[float, int]:
    return (-event.event_time.timestamp(), -event.seq)


def _encode_token(position: tuple[float, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode()


def _decode_token(token: str) -> tuple[float, int] | None:
    try:
        stamp, seq = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float(stamp), int(seq)
    except (binascii.Error, ValueError, TypeError):
        return None


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_event_time(value: str | None) -> datetime | None:
    """An explicit event time from a control request (ISO 8601; naive means UTC)."""
    return _when(value) if value else None
