"""A WSGI middleware around moto's server that adds the strictness of real AWS moto lacks."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qs

from sandbox.cloudtrail import Clock, Trail, UserKey, mark_used, parse_event_time, user_key
from sandbox.gaad import get_account_authorization_details
from sandbox.key_last_used import get_access_key_last_used
from sandbox.regions import describe_regions
from sandbox.service_credentials import ServiceCredentials
from sandbox.sso_roles import SsoRoles
from sandbox.wire import Call as _Call
from sandbox.wire import Reply as _Reply
from sandbox.wire import (
    error_message_of,
    error_reply,
    json_error,
    json_reply,
    xml_error,
)

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Requests per second when throttling is switched "on" without rates: IAM Identity Center
# quotas give sso-admin and identitystore ~20 requests/s each
# (https://docs.aws.amazon.com/singlesignon/latest/userguide/limits.html).
# CloudTrail's LookupEvents allows 2 requests/s per account per region (CloudTrail API
# reference, LookupEvents).
DEFAULT_THROTTLE: dict[str, float] = {"sso-admin": 20.0, "identitystore": 20.0, "cloudtrail": 2.0}

API_FAMILIES = ("iam", "sts", "organizations", "sso-admin", "identitystore", "cloudtrail")
# Families whose quota is per account and region rather than one bucket for the sandbox.
_PER_ACCOUNT_REGION = frozenset({"cloudtrail"})

# X-Amz-Target prefixes of the JSON services (botocore's service models, metadata.targetPrefix).
_FAMILY_OF_TARGET = {
    "SWBExternalService": "sso-admin",
    "AWSIdentityStore": "identitystore",
    "AWSOrganizationsV20161128": "organizations",
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101": "cloudtrail",
}
# The SigV4 credential scope names the signing name, which for sso-admin is "sso".
_FAMILY_OF_SCOPE = {"sso": "sso-admin"}

# What AWS answers a request signed by an inactive (or unknown) access key.
_INVALID_TOKEN = "The security token included in the request is invalid."  # noqa: S105

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")

# The throttling error each family answers with; all are in botocore's standard retry mode's
# list of throttling codes, so the client backs off and retries them.
_THROTTLE_CODE = {
    "iam": "Throttling",
    "sts": "Throttling",
    # Organizations throttles with TooManyRequestsException (Organizations API reference).
    "organizations": "TooManyRequestsException",
    "sso-admin": "ThrottlingException",
    "identitystore": "ThrottlingException",
    "cloudtrail": "ThrottlingException",
}

# What DeleteUser requires removed first, in the order AWS documents for deleting a user
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html#id_users_deleting_cli),
# with a message in the style of AWS's DeleteConflict errors.
DELETE_USER_DEPENDENTS: tuple[tuple[str, str], ...] = (
    ("login-profile", "Cannot delete entity, must delete login profile first."),
    ("access-keys", "Cannot delete entity, must delete access keys first."),
    ("signing-certificates", "Cannot delete entity, must delete signing certificates first."),
    ("ssh-public-keys", "Cannot delete entity, must delete SSH public keys first."),
    (
        "service-specific-credentials",
        "Cannot delete entity, must delete service specific credentials first.",
    ),
    ("mfa-devices", "Cannot delete entity, must delete MFA device first."),
    ("inline-policies", "Cannot delete entity, must delete policies first."),
    ("attached-policies", "Cannot delete entity, must detach all policies first."),
    ("groups", "Cannot delete entity, must remove user from all groups first."),
    ("permissions-boundary", "Cannot delete entity, must delete permissions boundary first."),
)


@dataclass
class AssignmentFault:
    """Make the next assignment creation for (account, permission set) end FAILED.

    Either field may be "*" to match any account or permission set.
    """

    account_id: str
    permission_set_arn: str
    reason: str = "Injected failure"


@dataclass
class Strictness:
    """How strict the sandbox is; readable and settable at runtime over ``/_iamc/config``.

    Attributes:
        delete_conflicts: DeleteUser refuses while the user has dependent objects.
        assume_role_checks: AssumeRole of a role that does not exist is refused with
            AccessDenied, as AWS does (moto hands out credentials for any ARN).
        async_in_progress_polls: Describe* polls that report IN_PROGRESS before the final status
            (when ``async_completion_ms`` is 0).
        async_completion_ms: When above 0, an asynchronous request (assignment creation or
            deletion, provisioning) completes this many milliseconds after it was made,
            however often it is polled, as AWS's do: a Describe or List*Status before then
            reports IN_PROGRESS, any after it the final status.
        conflicts: Duplicate permission-set names and duplicate assignments are refused.
        credential_checks: A request signed by an ``Inactive`` access key is refused
            (``InvalidClientTokenId``) and one signed by a user holding the quarantine policy
            is denied (``AccessDenied``), as AWS would; either way CloudTrail records it.
        throttle: Requests per second per API family (``iam``, ``sts``, ``organizations``,
            ``sso-admin``, ``identitystore``, ``cloudtrail``); a family not listed is not
            throttled. ``cloudtrail`` is per account and region, as AWS's quota is.
        latency_ms: Fixed delay added to every AWS call.
        faults: Pending injected assignment failures, consumed one per matching creation.
        deny: Calls (``service:Operation``, e.g. ``kms:GetKeyPolicy``) refused with
            AccessDenied, as a resource policy or SCP would refuse them in AWS; only calls the
            layer can name (JSON services and IAM/STS, not REST ones such as S3 or Lambda).
    """

    delete_conflicts: bool = True
    assume_role_checks: bool = True
    async_in_progress_polls: int = 2
    async_completion_ms: int = 0
    conflicts: bool = True
    credential_checks: bool = True
    throttle: dict[str, float] = field(default_factory=dict)
    latency_ms: int = 0
    faults: list[AssignmentFault] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update from JSON; ``throttle: true`` means the default rates.

        Raises:
            ValueError: An unknown setting or API family, or a value of the wrong type.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        for name, value in changes.items():
            if name == "throttle":
                setattr(self, name, _parse_throttle(value))
            elif name == "faults":
                self.faults = [AssignmentFault(**fault) for fault in value or []]
            elif name == "deny":
                self.deny = _parse_deny(value)
            elif name in (
                "delete_conflicts",
                "conflicts",
                "assume_role_checks",
                "credential_checks",
            ):
                setattr(self, name, bool(value))
            else:
                number = int(value)
                if number < 0:
                    raise ValueError(f"{name} must be >= 0")
                setattr(self, name, number)


def _parse_deny(value: Any) -> list[str]:
    if not value:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", v) for v in value
    ):
        raise ValueError("deny must be a list of 'service:Operation' (e.g. 'kms:GetKeyPolicy')")
    return list(value)


def _parse_throttle(value: Any) -> dict[str, float]:
    if value is True:
        return dict(DEFAULT_THROTTLE)
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError("throttle must be true, false or {family: requests_per_second}")
    unknown = sorted(set(value) - set(API_FAMILIES))
    if unknown:
        raise ValueError(f"unknown API family {', '.join(unknown)}; expected {API_FAMILIES}")
    return {family: float(rate) for family, rate in value.items() if float(rate) > 0}


class TokenBucket:
    """Classic token bucket: ``rate`` tokens a second, holding at most one second's worth."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class CallRecorder:
    """Counts calls per ``service:Operation`` (and per account), throttled attempts apart, and
    the time the sandbox itself spent on them.

    ``busy_cpu_s`` is the CPU time of the threads that served the calls (the added latency is a
    sleep, not counted): moto runs under one interpreter lock, so this is serialized time a
    client cannot win back by asking in parallel.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.calls: Counter[str] = Counter()
            self.throttled: Counter[str] = Counter()
            self.errors: Counter[str] = Counter()
            self.by_account: dict[str, Counter[str]] = {}
            self.busy_cpu_s: dict[str, float] = {}
            self.busy_wall_s: dict[str, float] = {}

    def record(self, key: str, account_id: str, *, throttled: bool = False) -> None:
        with self._lock:
            if throttled:
                self.throttled[key] += 1
                return
            self.calls[key] += 1
            self.by_account.setdefault(account_id, Counter())[key] += 1

    def record_time(self, key: str, cpu_s: float, wall_s: float) -> None:
        with self._lock:
            self.busy_cpu_s[key] = self.busy_cpu_s.get(key, 0.0) + cpu_s
            self.busy_wall_s[key] = self.busy_wall_s.get(key, 0.0) + wall_s

    def record_error(self, key: str, code: str) -> None:
        with self._lock:
            self.errors[f"{key}:{code}"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "errors": dict(self.errors),
                "by_account": {acct: dict(c) for acct, c in self.by_account.items()},
                "total": sum(self.calls.values()),
                "throttled_total": sum(self.throttled.values()),
                "busy_cpu_s": round(sum(self.busy_cpu_s.values()), 4),
                "busy_wall_s": round(sum(self.busy_wall_s.values()), 4),
                "busy_cpu_by_call": {k: round(v, 4) for k, v in self.busy_cpu_s.items()},
            }


@dataclass
class _AsyncRequest:
    """One asynchronous sso-admin request the middleware reports on."""

    kind: str  # creation | deletion | provisioning
    request_id: str
    status: dict[str, Any]  # the status object without Status/FailureReason
    polls_left: int
    final: str = "SUCCEEDED"
    failure_reason: str | None = None
    done: bool = False
    # Monotonic time it completes at (time-based model), None: after ``polls_left`` polls.
    completes_at: float | None = None

    def view(self) -> dict[str, Any]:
        if self.completes_at is not None and time.monotonic() >= self.completes_at:
            self.done = True
        out = dict(self.status)
        out["RequestId"] = self.request_id
        out["Status"] = self.final if self.done else "IN_PROGRESS"
        if self.done and self.failure_reason:
            out["FailureReason"] = self.failure_reason
        return out

    def poll(self) -> dict[str, Any]:
        if self.completes_at is not None:
            return self.view()
        if self.polls_left > 0:
            self.polls_left -= 1
        else:
            self.done = True
        return self.view()


def caller_account_id(headers: dict[str, str], access_key: str | None) -> str:
    """The account moto serves a request from, resolved as moto's BaseResponse does.

    moto checks ``MOTO_ACCOUNT_ID``, then the ``x-moto-account-id`` header, then looks the
    access key up among every account's IAM access keys (assumed-role keys are registered in
    the role's account), falling back to its default account.

    moto's own lookup (``get_account_id_from``) visits every partition's IAM backend of every
    account, creating each one it has not yet made: with AWS-managed policies loaded that is
    ~0.15 s per backend, six partitions per account. The sandbox serves the ``aws`` partition
    only, so this looks there, and the middleware hands the answer to moto as the header.
    """
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if headers.get("x-moto-account-id"):
        return headers["x-moto-account-id"]
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    key = access_key or "AKIAEXAMPLE"
    for account_id, backends in list(iam_backends.items()):  # list(): moto's thread note
        if key in backends["aws"].access_keys:
            return account_id
    return DEFAULT_ACCOUNT_ID


class StrictMiddleware:
    """Wraps moto's WSGI app: control endpoints, latency, throttling, recording, strict rules.

    Because the server runs in this process, rules read moto's backends directly rather than
    calling the API back.
    """

    def __init__(self, app: WsgiApp, strictness: Strictness | None = None):
        self.app = app
        self.strictness = strictness or Strictness()
        self.recorder = CallRecorder()
        self.manifest: dict[str, Any] | None = None
        self.clock = Clock()
        self.trail = Trail(self.clock)
        self.service_credentials = ServiceCredentials(self.clock.naive_now, self._caller_user)
        self.sso_roles = SsoRoles()
        self._lock = threading.RLock()
        self._buckets: dict[Any, TokenBucket] = {}
        self._requests: dict[str, _AsyncRequest] = {}
        self._handlers: dict[str, Callable[[_Call], _Reply | None]] = {
            "iam:DeleteUser": self._delete_user,
            "iam:GetAccountAuthorizationDetails": get_account_authorization_details,
            "iam:GetAccessKeyLastUsed": get_access_key_last_used,
            **self.service_credentials.handlers(),
            "sts:AssumeRole": self._assume_role,
            "sso-admin:CreatePermissionSet": self._create_permission_set,
            "sso-admin:CreateAccountAssignment": self._create_account_assignment,
            "sso-admin:DeleteAccountAssignment": self._delete_account_assignment,
            "sso-admin:ProvisionPermissionSet": self._provision_permission_set,
            "sso-admin:ListPermissionSetsProvisionedToAccount": self._provisioned_to_account,
            "sso-admin:DescribeAccountAssignmentCreationStatus": self._describe("creation"),
            "sso-admin:DescribeAccountAssignmentDeletionStatus": self._describe("deletion"),
            "sso-admin:DescribePermissionSetProvisioningStatus": self._describe("provisioning"),
            "sso-admin:ListAccountAssignmentCreationStatus": self._list_statuses("creation"),
            "sso-admin:ListAccountAssignmentDeletionStatus": self._list_statuses("deletion"),
            "sso-admin:ListPermissionSetProvisioningStatus": self._list_statuses("provisioning"),
            "cloudtrail:LookupEvents": self.trail.lookup_events,
            "ec2:DescribeRegions": describe_regions,
        }

    # -- WSGI entry -------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        cpu_started = time.thread_time()  # the latency below sleeps: no CPU
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        # moto reads the body again: hand it a fresh stream.
        environ["wsgi.input"] = io.BytesIO(body)
        if path.startswith("/_iamc/"):
            return self._control(environ["REQUEST_METHOD"], path, body)(start_response)
        call = self._identify(environ, body)
        if call is None:
            return self._unidentified(environ, start_response)

        who = user_key(call.account_id, call.access_key)
        if who is not None:
            denial = self._authenticate(who, call)
            if denial is not None:
                self.recorder.record_error(call.key, str(denial.status))
                return denial(start_response)

        latency = self.strictness.latency_ms
        if latency:
            time.sleep(latency / 1000)
        if not self._admit(call):
            self.recorder.record(call.key, call.account_id, throttled=True)
            code = _THROTTLE_CODE.get(call.family, "ThrottlingException")
            log.debug("throttled %s", call.key)
            return error_reply(call, code, "Rate exceeded", 400)(start_response)
        self.recorder.record(call.key, call.account_id)
        wall_started = time.perf_counter()
        try:
            return self._serve(call, who, environ, start_response)
        finally:
            self.recorder.record_time(
                call.key, time.thread_time() - cpu_started, time.perf_counter() - wall_started
            )

    def _serve(
        self,
        call: _Call,
        who: UserKey | None,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Any:
        reply: _Reply | None = None
        handler = self._handlers.get(call.key)
        if call.key in self.strictness.deny:
            code = "AccessDenied" if call.is_query else "AccessDeniedException"
            message = f"not authorized to perform {call.key} (denied by the sandbox's deny list)"
            reply = error_reply(call, code, message, 403 if call.is_query else 400)
        elif handler is not None:
            reply = handler(call)
        if reply is None and who is not None:
            # Buffer moto's answer to learn its error code for the trail.
            reply = self._forward_reply(call)
        if reply is None:
            return self._pass_through(call, environ, start_response)
        if reply.status >= 400:
            self.recorder.record_error(call.key, str(reply.status))
        if who is not None:
            self._note_use(who, call, reply)
        return reply(start_response)

    def _unidentified(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """A request whose operation the layer can't name (REST services such as S3).

        An inactive key is still refused, whatever the service: AWS authenticates every
        request before routing it.
        """
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if match is not None and self.strictness.credential_checks:
            access_key, _, scope = match.groups()
            headers = {"x-moto-account-id": environ.get("HTTP_X_MOTO_ACCOUNT_ID", "")}
            account_id = caller_account_id(headers, access_key)
            environ["HTTP_X_MOTO_ACCOUNT_ID"] = account_id
            who = user_key(account_id, access_key)
            if who is not None and not who.active:
                if scope == "s3":
                    # S3 names a key it won't accept this way (S3 API reference, error codes).
                    body = (
                        b"<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id "
                        b"you provided does not exist in our records.</Message></Error>"
                    )
                    return _Reply(403, body, "application/xml", {})(start_response)
                return json_error("UnrecognizedClientException", _INVALID_TOKEN, 403)(
                    start_response
                )
        return self.app(environ, start_response)

    def _authenticate(self, who: UserKey, call: _Call) -> _Reply | None:
        """Refuse an inactive key and deny a quarantined user, recording both in the trail."""
        if not self.strictness.credential_checks:
            return None
        if not who.active:
            # Query services answer InvalidClientTokenId (403); JSON services answer
            # UnrecognizedClientException (400) with the same message.
            if call.is_query:
                denial = xml_error(call.family, "InvalidClientTokenId", _INVALID_TOKEN, 403)
            else:
                denial = json_error("UnrecognizedClientException", _INVALID_TOKEN, 400)
            self.trail.record_call(
                who, call, error_code=denial.error_code, error_message=_INVALID_TOKEN
            )
            return denial
        if who.quarantined and call.key != "sts:GetCallerIdentity":
            # GetCallerIdentity needs no permission and an explicit deny can't stop it (STS
            # API reference, GetCallerIdentity); everything else meets the deny-all policy.
            action = f"{call.scope or call.family}:{call.operation}"
            message = (
                f"User: {who.user_arn} is not authorized to perform: {action} on resource: * "
                "with an explicit deny in an identity-based policy"
            )
            if call.is_query:
                denial = xml_error(call.family, "AccessDenied", message, 403)
            else:
                denial = json_error("AccessDeniedException", message, 400)
            self.trail.record_call(who, call, error_code="AccessDenied", error_message=message)
            # AWS authenticated the key, so its last use moves even though access was denied.
            mark_used(who, call.scope or call.family, call.region, self.clock.naive_now())
            return denial
        return None

    def _note_use(self, who: UserKey, call: _Call, reply: _Reply) -> None:
        code = reply.error_code
        message = error_message_of(reply.body) if code else None
        self.trail.record_call(who, call, error_code=code, error_message=message)
        mark_used(who, call.scope or call.family, call.region, self.clock.naive_now())

    def _caller_user(self, call: _Call) -> str | None:
        who = user_key(call.account_id, call.access_key)
        return who.user_name if who is not None else None

    def _pass_through(
        self, call: _Call, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Any:
        def recording_start_response(status: str, headers: list[Any], *args: Any) -> Any:
            if not status.startswith(("2", "3")):
                self.recorder.record_error(call.key, status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        try:
            return self.app(environ, recording_start_response)
        except NotImplementedError as err:
            return self._not_implemented(call, err)(start_response)

    def _not_implemented(self, call: _Call, err: NotImplementedError) -> _Reply:
        # moto raises for operations it lacks, which its server turns into an HTML 500 that
        # clients retry as a transient fault. An endpoint without the operation answers 501
        # NotImplemented, which clients don't retry.
        self.recorder.record_error(call.key, "501")
        return error_reply(call, "NotImplemented", str(err), 501)

    def _forward(self, call: _Call) -> tuple[int, bytes]:
        """Send the call to moto and return its status and body, for rewriting."""
        reply = self._forward_reply(call)
        return reply.status, reply.body

    def _forward_reply(self, call: _Call) -> _Reply:
        """Send the call to moto and keep its whole answer."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[Any], *_: Any) -> None:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = headers

        environ = dict(call.environ)
        environ["wsgi.input"] = io.BytesIO(call.body)
        try:
            chunks = self.app(environ, capture)
        except NotImplementedError as err:
            return self._not_implemented(call, err)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        headers = {k: v for k, v in captured.get("headers", []) if k.lower() != "content-length"}
        content_type = headers.pop("Content-Type", headers.pop("content-type", "text/xml"))
        return _Reply(captured.get("status", 500), body, content_type, headers)

    # -- identification, throttling ---------------------------------------------------------

    def _identify(self, environ: dict[str, Any], body: bytes) -> _Call | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        match = _CREDENTIAL.search(auth)
        if match is None:
            return None
        access_key, region, scope = match.groups()
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            # The operation follows the last dot: CloudTrail's prefix has dots of its own.
            prefix, _, operation = target.rpartition(".")
            family = _FAMILY_OF_TARGET.get(prefix, _FAMILY_OF_SCOPE.get(scope, scope))
        else:
            family = _FAMILY_OF_SCOPE.get(scope, scope)
            params = parse_qs(body.decode(errors="replace")) if body else {}
            if "Action" not in params:
                params = parse_qs(environ.get("QUERY_STRING", ""))
            operation = params.get("Action", [""])[0]
        if not operation:
            return None
        headers = {"x-moto-account-id": environ.get("HTTP_X_MOTO_ACCOUNT_ID", "")}
        account_id = caller_account_id(headers, access_key)
        # moto then takes the account from the header instead of looking the key up again.
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = account_id
        return _Call(family, operation, account_id, region, body, environ, access_key, scope)

    def _admit(self, call: _Call) -> bool:
        rate = self.strictness.throttle.get(call.family)
        if not rate:
            return True
        bucket_key: Any = call.family
        if call.family in _PER_ACCOUNT_REGION:
            bucket_key = (call.family, call.account_id, call.region)
        with self._lock:
            bucket = self._buckets.get(bucket_key)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[bucket_key] = TokenBucket(rate)
            return bucket.take()

    # -- control endpoints ------------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return json_reply({"error": "body is not JSON"}, 400)
        if path == "/_iamc/calls" and method == "GET":
            return json_reply(self.recorder.snapshot())
        if path == "/_iamc/calls/reset" and method == "POST":
            self.recorder.reset()
            return json_reply(self.recorder.snapshot())
        if path == "/_iamc/config":
            if method == "POST":
                try:
                    with self._lock:
                        self.strictness.update(payload)
                except (ValueError, TypeError) as err:
                    return json_reply({"error": str(err)}, 400)
            return json_reply(self.strictness.to_dict())
        if path == "/_iamc/faults" and method == "POST":
            try:
                fault = AssignmentFault(**payload)
            except TypeError as err:
                return json_reply({"error": str(err)}, 400)
            with self._lock:
                self.strictness.faults.append(fault)
            return json_reply(self.strictness.to_dict())
        if path == "/_iamc/clock":
            return self._control_clock(method, payload)
        if path == "/_iamc/trail/console-login" and method == "POST":
            return self._control_console_login(payload)
        if path == "/_iamc/manifest" and method == "GET":
            return json_reply(self.manifest or {}, 200 if self.manifest else 404)
        if path == "/_iamc/health":
            return json_reply({"ok": True})
        return json_reply({"error": f"no such control endpoint: {method} {path}"}, 404)

    def _clock_view(self) -> dict[str, Any]:
        return {
            "now": self.clock.now().isoformat(),
            "offset_seconds": self.clock.offset.total_seconds(),
        }

    def _control_clock(self, method: str, payload: dict[str, Any]) -> _Reply:
        if method == "POST":
            try:
                if "offset_seconds" in payload:
                    self.clock.set_offset(float(payload["offset_seconds"]))
                if "advance_seconds" in payload:
                    self.clock.shift(float(payload["advance_seconds"]))
            except (TypeError, ValueError) as err:
                return json_reply({"error": f"not a number of seconds: {err}"}, 400)
        return json_reply(self._clock_view())

    def _control_console_login(self, payload: dict[str, Any]) -> _Reply:
        try:
            account_id = str(payload["account_id"])
            user_name = str(payload["user_name"])
            event_time = parse_event_time(payload.get("event_time"))
        except KeyError as err:
            return json_reply({"error": f"missing {err}"}, 400)
        except ValueError as err:
            return json_reply({"error": f"bad event_time: {err}"}, 400)
        extra = {k: payload[k] for k in ("source_ip", "user_agent") if payload.get(k)}
        event = self.trail.record_console_login_failure(
            account_id,
            user_name,
            event_time=event_time,
            mfa_used=bool(payload.get("mfa_used", False)),
            **extra,
        )
        return json_reply(event.lookup_view())

    def reset_async(self) -> None:
        """Forget tracked asynchronous requests (after moto's state is reset)."""
        with self._lock:
            self._requests.clear()

    def reset_state(self) -> None:
        """Forget everything the layer keeps beside moto: async requests, service-specific
        credentials, provisioned roles, CloudTrail events and the clock's offset."""
        self.reset_async()
        self.service_credentials.reset()
        self.sso_roles.reset()
        self.trail.reset()
        self.clock.set_offset(0)
        with self._lock:
            self._buckets.clear()

    # -- IAM DeleteUser ---------------------------------------------------------------------

    def _delete_user(self, call: _Call) -> _Reply | None:
        from moto.iam.models import iam_backends
        from moto.utilities.utils import get_partition

        backend = iam_backends[call.account_id][get_partition(call.region)]
        user = backend.users.get(call.form().get("UserName", ""))
        if user is None:
            return None  # moto answers NoSuchEntity
        if self.strictness.delete_conflicts:
            for dependent, message in DELETE_USER_DEPENDENTS:
                if dependent == "service-specific-credentials":
                    has = self.service_credentials.user_has(call.account_id, user.name)
                else:
                    has = _user_has(backend, user, dependent)
                if has:
                    return xml_error("iam", "DeleteConflict", message, 409)
        reply = self._forward_reply(call)
        if reply.status == 200:
            # A deleted user's service-specific credentials go with it.
            self.service_credentials.forget_user(call.account_id, user.name)
        return reply

    # -- STS AssumeRole ---------------------------------------------------------------------

    def _assume_role(self, call: _Call) -> _Reply | None:
        if not self.strictness.assume_role_checks:
            return None
        from moto.iam.models import iam_backends
        from moto.utilities.utils import get_partition

        role_arn = call.form().get("RoleArn", "")
        parts = role_arn.split(":")
        if len(parts) != 6 or not parts[5].startswith("role/"):
            return None  # moto answers the validation error
        account_id, role_name = parts[4], parts[5].rsplit("/", 1)[-1]
        backend = iam_backends[account_id][get_partition(call.region)]
        if any(role.name == role_name for role in backend.roles.values()):
            return None
        # AWS answers a missing role (or a trust policy that excludes the caller) the same
        # way, without saying which (STS API reference, AssumeRole errors).
        return xml_error(
            "sts",
            "AccessDenied",
            f"User: arn:aws:iam::{call.account_id}:user/sandbox is not authorized to perform: "
            f"sts:AssumeRole on resource: {role_arn}",
            403,
        )

    # -- sso-admin --------------------------------------------------------------------------

    @staticmethod
    def _ssoadmin(call: _Call) -> Any:
        from moto.ssoadmin.models import ssoadmin_backends

        return ssoadmin_backends[call.account_id][call.region]

    def _create_permission_set(self, call: _Call) -> _Reply | None:
        if not self.strictness.conflicts:
            return None
        params = call.json()
        for existing in self._ssoadmin(call).permission_sets:
            if existing.instance_arn == params.get("InstanceArn") and existing.name == params.get(
                "Name"
            ):
                return json_error(
                    "ConflictException",
                    f"PermissionSet with name {params.get('Name')} already exists.",
                    409,
                )
        return None

    def _create_account_assignment(self, call: _Call) -> _Reply | None:
        params = call.json()
        wanted = _assignment_key(params)
        if self.strictness.conflicts:
            for existing in self._ssoadmin(call).account_assignments:
                if _assignment_key(vars(existing), snake=True) == wanted:
                    return json_error(
                        "ConflictException",
                        "The request would create an account assignment that already exists.",
                        409,
                    )
        summary = {
            "TargetId": params.get("TargetId"),
            "TargetType": params.get("TargetType"),
            "PermissionSetArn": params.get("PermissionSetArn"),
            "PrincipalType": params.get("PrincipalType"),
            "PrincipalId": params.get("PrincipalId"),
            "CreatedDate": time.time(),
        }
        fault = self._take_fault(params.get("TargetId"), params.get("PermissionSetArn"))
        if fault is not None:
            # The assignment is never made, as when AWS reports FAILED.
            tracked = self._track("creation", summary, "FAILED", fault.reason)
            log.info("injected FAILED for assignment %s", tracked.request_id)
            return json_reply({"AccountAssignmentCreationStatus": tracked.view()})
        # Creating an assignment provisions the permission set to the account (sso-admin API
        # reference, CreateAccountAssignment): if that can't succeed, neither does this.
        permission_set = self._permission_set(call, params.get("PermissionSetArn"))
        account_id = str(params.get("TargetId"))
        if permission_set is not None:
            reason = self.sso_roles.check(permission_set, account_id)
            if reason is not None:
                tracked = self._track("creation", summary, "FAILED", reason)
                return json_reply({"AccountAssignmentCreationStatus": tracked.view()})
        status, body = self._forward(call)
        if status != 200:
            return _Reply(status, body, "application/x-amz-json-1.1", {})
        if permission_set is not None:
            self.sso_roles.provision(permission_set, account_id)
        created = json.loads(body)["AccountAssignmentCreationStatus"]
        tracked = self._track("creation", {**summary, **_without_status(created)})
        return json_reply({"AccountAssignmentCreationStatus": tracked.view()})

    def _delete_account_assignment(self, call: _Call) -> _Reply | None:
        params = call.json()
        permission_set = self._permission_set(call, params.get("PermissionSetArn"))
        status, body = self._forward(call)
        if status != 200:
            return _Reply(status, body, "application/x-amz-json-1.1", {})
        account_id = str(params.get("TargetId"))
        ps_arn = params.get("PermissionSetArn")
        remaining = [
            a
            for a in list(self._ssoadmin(call).account_assignments)
            if a.target_id == account_id and a.permission_set_arn == ps_arn
        ]
        if permission_set is not None and not remaining:
            # The role lives while the set is assigned in the account: removing the last
            # assignment removes the AWSReservedSSO_ role ("Remove permission sets in IAM
            # Identity Center", https://docs.aws.amazon.com/singlesignon/latest/userguide/
            # howtoremovepermissionset.html; practitioners report the same, e.g.
            # github.com/ministryofjustice/modernisation-platform/issues/6216).
            self.sso_roles.remove(ps_arn, permission_set.name, account_id)
        deleted = json.loads(body)["AccountAssignmentDeletionStatus"]
        tracked = self._track("deletion", _without_status(deleted))
        return json_reply({"AccountAssignmentDeletionStatus": tracked.view()})

    def _provision_permission_set(self, call: _Call) -> _Reply | None:
        params = call.json()
        ps_arn = params.get("PermissionSetArn")
        permission_set = self._permission_set(call, ps_arn)
        if params.get("TargetType") == "AWS_ACCOUNT":
            accounts = [str(params.get("TargetId"))]
        else:  # ALL_PROVISIONED_ACCOUNTS
            assigned = {
                a.target_id
                for a in list(self._ssoadmin(call).account_assignments)
                if a.permission_set_arn == ps_arn
            }
            accounts = sorted(assigned | set(self.sso_roles.provisioned_accounts(ps_arn)))
        reason = None
        if permission_set is not None:
            reason = next(
                (r for r in (self.sso_roles.check(permission_set, a) for a in accounts) if r),
                None,
            )
        status, body = self._forward(call) if reason is None else (200, b"")
        if status != 200:
            return _Reply(status, body, "application/x-amz-json-1.1", {})
        provisioned: dict[str, Any] = {"PermissionSetArn": ps_arn, "CreatedDate": time.time()}
        if body:
            provisioned = _without_status(json.loads(body)["PermissionSetProvisioningStatus"])
        # AWS reports the target account only for TargetType AWS_ACCOUNT; moto reports the
        # caller's account.
        provisioned.pop("AccountId", None)
        if params.get("TargetType") == "AWS_ACCOUNT":
            provisioned["AccountId"] = params.get("TargetId")
        if reason is not None:
            tracked = self._track("provisioning", provisioned, "FAILED", reason)
            return json_reply({"PermissionSetProvisioningStatus": tracked.view()})
        if permission_set is not None:
            for account_id in accounts:
                self.sso_roles.provision(permission_set, account_id)
        tracked = self._track("provisioning", provisioned)
        return json_reply({"PermissionSetProvisioningStatus": tracked.view()})

    def _provisioned_to_account(self, call: _Call) -> _Reply | None:
        # moto ignores AccountId and lists every set ProvisionPermissionSet was ever called
        # for, in any account, and none a CreateAccountAssignment provisioned. AWS lists the
        # sets provisioned to that account (API_ListPermissionSetsProvisionedToAccount):
        # those whose role is there.
        params = call.json()
        if self._ssoadmin(call).instances and not any(
            i.instance_arn == params.get("InstanceArn") for i in self._ssoadmin(call).instances
        ):
            return None  # moto's own answer for an unknown instance
        arns = self.sso_roles.provisioned_to(str(params.get("AccountId")))
        return json_reply({"PermissionSets": arns})

    def _permission_set(self, call: _Call, permission_set_arn: str | None) -> Any:
        for permission_set in list(self._ssoadmin(call).permission_sets):
            if permission_set.permission_set_arn == permission_set_arn:
                return permission_set
        return None

    def _describe(self, kind: str) -> Callable[[_Call], _Reply | None]:
        id_key, out_key = _STATUS_KEY[kind]

        def describe(call: _Call) -> _Reply | None:
            request_id = call.json().get(id_key, "")
            with self._lock:
                tracked = self._requests.get(request_id)
                if tracked is None or tracked.kind != kind:
                    return json_error(
                        "ResourceNotFoundException", f"Request {request_id} not found.", 400
                    )
                return json_reply({out_key: tracked.poll()})

        return describe

    def _list_statuses(self, kind: str) -> Callable[[_Call], _Reply | None]:
        out_key = {
            "creation": "AccountAssignmentsCreationStatus",
            "deletion": "AccountAssignmentsDeletionStatus",
            "provisioning": "PermissionSetsProvisioningStatus",
        }[kind]

        def list_statuses(call: _Call) -> _Reply | None:
            wanted = (call.json().get("Filter") or {}).get("Status")
            with self._lock:
                items = [
                    {k: v for k, v in r.view().items() if k in ("Status", "RequestId")}
                    | {"CreatedDate": r.status.get("CreatedDate")}
                    for r in self._requests.values()
                    if r.kind == kind
                ]
            if wanted:
                items = [item for item in items if item["Status"] == wanted]
            return json_reply({out_key: items})

        return list_statuses

    def _track(
        self,
        kind: str,
        status: dict[str, Any],
        final: str = "SUCCEEDED",
        failure_reason: str | None = None,
    ) -> _AsyncRequest:
        # Our own ids: moto's come from its seeded random, which repeats after a re-seed.
        with self._lock:
            tracked = _AsyncRequest(
                kind=kind,
                request_id=str(uuid.uuid4()),
                status=status,
                polls_left=self.strictness.async_in_progress_polls,
                final=final,
                failure_reason=failure_reason,
                completes_at=time.monotonic() + self.strictness.async_completion_ms / 1000
                if self.strictness.async_completion_ms > 0
                else None,
            )
            self._requests[tracked.request_id] = tracked
            return tracked

    def _take_fault(self, account_id: str | None, permission_set_arn: str | None) -> Any:
        with self._lock:
            for fault in self.strictness.faults:
                # "*" matches any: a test can't know a permission set's ARN before it exists.
                if fault.account_id in ("*", account_id) and fault.permission_set_arn in (
                    "*",
                    permission_set_arn,
                ):
                    self.strictness.faults.remove(fault)
                    return fault
        return None


# Request-id parameter and status member of each asynchronous kind (sso-admin API reference).
_STATUS_KEY = {
    "creation": ("AccountAssignmentCreationRequestId", "AccountAssignmentCreationStatus"),
    "deletion": ("AccountAssignmentDeletionRequestId", "AccountAssignmentDeletionStatus"),
    "provisioning": ("ProvisionPermissionSetRequestId", "PermissionSetProvisioningStatus"),
}

_ASSIGNMENT_FIELDS = (
    ("InstanceArn", "instance_arn"),
    ("TargetId", "target_id"),
    ("PermissionSetArn", "permission_set_arn"),
    ("PrincipalType", "principal_type"),
    ("PrincipalId", "principal_id"),
)


def _assignment_key(values: dict[str, Any], snake: bool = False) -> tuple[Any, ...]:
    return tuple(values.get(s if snake else c) for c, s in _ASSIGNMENT_FIELDS)


def _without_status(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in ("Status", "RequestId", "FailureReason")}


def _user_has(backend: Any, user: Any, dependent: str) -> bool:
    """Whether a moto IAM user still has one kind of object DeleteUser refuses to orphan."""
    if dependent == "login-profile":
        return user.password is not None
    if dependent == "access-keys":
        return bool(user.access_keys)
    if dependent == "signing-certificates":
        return bool(user.signing_certificates)
    if dependent == "ssh-public-keys":
        return bool(user.ssh_public_keys)
    if dependent == "service-specific-credentials":
        # moto 5.2.5 does not model them: the middleware keeps them (ServiceCredentials).
        return bool(getattr(user, "service_specific_credentials", None))
    if dependent == "mfa-devices":
        return bool(user.mfa_devices)
    if dependent == "inline-policies":
        return bool(user.policies)
    if dependent == "attached-policies":
        return bool(user.managed_policies)
    if dependent == "groups":
        return bool(backend.get_groups_for_user(user.name))
    if dependent == "permissions-boundary":
        # moto 5.2.5 has no user permissions boundary (PutUserPermissionsBoundary).
        return bool(getattr(user, "permissions_boundary_arn", None))
    raise ValueError(dependent)
