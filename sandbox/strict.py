"""A WSGI middleware around moto's server that adds the strictness of real AWS moto lacks."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC
from typing import Any
from urllib.parse import parse_qs

from sandbox.cloudtrail import (
    EVENT_TIME_KEY,
    SOURCE_IP_KEY,
    Clock,
    Trail,
    UserKey,
    mark_used,
    parse_event_time,
    user_key,
)
from sandbox.gaad import get_account_authorization_details
from sandbox.key_last_used import get_access_key_last_used
from sandbox.people_control import control_people
from sandbox.policy_simulator import simulate_principal_policy
from sandbox.recorder import CallRecorder
from sandbox.regions import describe_regions
from sandbox.service_credentials import ServiceCredentials
from sandbox.service_last_accessed import ServiceLastAccessed
from sandbox.sso_roles import SsoRoles
from sandbox.strict_iam import IamRules
from sandbox.strict_settings import AssignmentFault, Strictness
from sandbox.strict_sso_admin import SsoAdminRules
from sandbox.strict_sts import StsRules, note_role_used
from sandbox.token_bucket import TokenBucket
from sandbox.usage_control import control_usage, s3_operation
from sandbox.wire import Call as _Call
from sandbox.wire import Reply as _Reply
from sandbox.wire import (
    error_message_of,
    error_reply,
    iam_backend,
    json_error,
    json_reply,
    xml_error,
)
from sandbox.workload_control import WorkloadState, control_workloads

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

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

# Who may name a request's source address (X-Forwarded-For): the sandbox's own playback.
_LOOPBACK = frozenset({"127.0.0.1", "::1"})

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


def _unsigned_web_identity(environ: dict[str, Any], body: bytes) -> _Call | None:
    """AssumeRoleWithWebIdentity, which clients send unsigned (the token is the credential),
    served from the role's account."""
    if environ.get("HTTP_AUTHORIZATION") or not body:
        return None
    params = parse_qs(body.decode(errors="replace"))
    if params.get("Action", [""])[0] != "AssumeRoleWithWebIdentity":
        return None
    parts = params.get("RoleArn", [""])[0].split(":")
    account_id = parts[4] if len(parts) == 6 else ""
    return _Call("sts", "AssumeRoleWithWebIdentity", account_id, "us-east-1", body, environ)


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
    # Imported here: moto is slow to import, and only a serving sandbox needs its backends.
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
        self.workload_state = WorkloadState()
        self.service_last_accessed = ServiceLastAccessed(self.trail, self.clock)
        self._lock = threading.RLock()
        self._buckets: dict[Any, TokenBucket] = {}
        self.sso_admin = SsoAdminRules(
            self.strictness, self.sso_roles, self._lock, self._forward_reply
        )
        iam = IamRules(self.strictness, self.service_credentials, self._forward_reply)
        self.sts = StsRules(self.strictness, self.trail, self.clock, self._forward_reply)
        self._handlers: dict[str, Callable[[_Call], _Reply | None]] = {
            **iam.handlers(),
            "iam:GetAccountAuthorizationDetails": get_account_authorization_details,
            "iam:GetAccessKeyLastUsed": get_access_key_last_used,
            "iam:SimulatePrincipalPolicy": simulate_principal_policy,
            **self.service_credentials.handlers(),
            **self.service_last_accessed.handlers(),
            **self.sts.handlers(),
            **self.sso_admin.handlers(),
            "cloudtrail:LookupEvents": self.trail.lookup_events,
            "ec2:DescribeRegions": lambda call: describe_regions(
                call, self.strictness.enabled_regions
            ),
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
            return self._control(environ["REQUEST_METHOD"], path, body, environ)(start_response)
        self._apply_forwarding(environ)
        call = self._identify(environ, body) or _unsigned_web_identity(environ, body)
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
            served = self._serve(call, who, environ, start_response)
            if who is None and call.access_key:
                self._note_role_use(call)
            return served
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
            operation = s3_operation(environ) if scope == "s3" else None
            if who is not None and who.active and operation is not None:
                # S3's management calls are CloudTrail events like any other (CloudTrail user
                # guide, "Logging Amazon S3 API calls"): record the ones the layer can name.
                region = match.group(2)
                body = environ["wsgi.input"].getvalue()
                call = _Call("s3", operation, account_id, region, body, environ, access_key, "s3")
                reply = self._forward_reply(call)
                self._note_use(who, call, reply)
                return reply(start_response)
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
        mark_used(who, call.scope or call.family, call.region, self._call_time(call))

    def _call_time(self, call: _Call) -> Any:
        """When the call happened, naive UTC: the playback's backdated time, or now."""
        when = call.environ.get(EVENT_TIME_KEY)
        return when.astimezone(UTC).replace(tzinfo=None) if when else self.clock.naive_now()

    def _note_role_use(self, call: _Call) -> None:
        """moto stamps a role's last use with the real time when its session's key signs a
        call (``mark_account_as_visited``, for the roles it finds by ARN); restamp it with the
        sandbox clock and the call's region, which moto leaves out."""
        backend = iam_backend(call.account_id)
        key = backend.access_keys.get(call.access_key)
        if key is None or not key.role_arn:
            return
        # By whole ARN, not by name (strict_sts.find_role): by name, the tool's own
        # OrganizationAccountAccessRole sessions would move that role's last use on every call,
        # and two GetAccountAuthorizationDetails reads would differ (test_sandbox_gaad).
        role = next((r for r in list(backend.roles.values()) if r.arn == key.role_arn), None)
        if role is not None:
            note_role_used(role, call.region, self._call_time(call))

    def _apply_forwarding(self, environ: dict[str, Any]) -> None:
        """Sandbox only: a loopback request may name its source address and event time."""
        if not self.strictness.forwarded_for or environ.get("REMOTE_ADDR") not in _LOOPBACK:
            return
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            environ[SOURCE_IP_KEY] = forwarded.split(",", 1)[0].strip()
        stamp = environ.get("HTTP_X_IAMC_EVENT_TIME")
        if stamp:
            try:
                environ[EVENT_TIME_KEY] = parse_event_time(stamp)
            except ValueError:
                log.warning("ignored a bad X-Iamc-Event-Time: %r", stamp)

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

    def _control(
        self, method: str, path: str, body: bytes, environ: dict[str, Any] | None = None
    ) -> _Reply:
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
        if path.startswith("/_iamc/workloads/"):
            return control_workloads(self, method, path, payload, environ or {})
        if path.startswith("/_iamc/usage/"):
            return control_usage(self, method, path, payload, environ or {})
        if path.startswith("/_iamc/users/"):
            return control_people(method, path, payload)
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
        self.sso_admin.reset()

    def reset_state(self) -> None:
        """Forget everything the layer keeps beside moto: async requests, service-specific
        credentials, provisioned roles, CloudTrail events and the clock's offset."""
        self.reset_async()
        self.service_credentials.reset()
        self.sso_roles.reset()
        self.trail.reset()
        self.workload_state.reset()
        self.service_last_accessed.reset()
        self.clock.set_offset(0)
        with self._lock:
            self._buckets.clear()
