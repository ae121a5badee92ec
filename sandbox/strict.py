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
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Requests per second when throttling is switched "on" without rates: IAM Identity Center
# quotas give sso-admin and identitystore ~20 requests/s each
# (https://docs.aws.amazon.com/singlesignon/latest/userguide/limits.html).
DEFAULT_THROTTLE: dict[str, float] = {"sso-admin": 20.0, "identitystore": 20.0}

API_FAMILIES = ("iam", "sts", "organizations", "sso-admin", "identitystore")

# Services that speak the query protocol (form body, XML answers); the others speak JSON 1.1.
_QUERY_SERVICES = frozenset({"iam", "sts"})

# X-Amz-Target prefixes of the JSON services (botocore's service models, metadata.targetPrefix).
_FAMILY_OF_TARGET = {
    "SWBExternalService": "sso-admin",
    "AWSIdentityStore": "identitystore",
    "AWSOrganizationsV20161128": "organizations",
}
# The SigV4 credential scope names the signing name, which for sso-admin is "sso".
_FAMILY_OF_SCOPE = {"sso": "sso-admin"}

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
}

_XML_NAMESPACE = {
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
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
        async_in_progress_polls: Describe* polls that report IN_PROGRESS before the final status.
        conflicts: Duplicate permission-set names and duplicate assignments are refused.
        throttle: Requests per second per API family (``iam``, ``sts``, ``organizations``,
            ``sso-admin``, ``identitystore``); a family not listed is not throttled.
        latency_ms: Fixed delay added to every AWS call.
        faults: Pending injected assignment failures, consumed one per matching creation.
    """

    delete_conflicts: bool = True
    assume_role_checks: bool = True
    async_in_progress_polls: int = 2
    conflicts: bool = True
    throttle: dict[str, float] = field(default_factory=dict)
    latency_ms: int = 0
    faults: list[AssignmentFault] = field(default_factory=list)

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
            elif name in ("delete_conflicts", "conflicts", "assume_role_checks"):
                setattr(self, name, bool(value))
            else:
                number = int(value)
                if number < 0:
                    raise ValueError(f"{name} must be >= 0")
                setattr(self, name, number)


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
    """Counts calls per ``service:Operation`` (and per account), throttled attempts apart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.calls: Counter[str] = Counter()
            self.throttled: Counter[str] = Counter()
            self.errors: Counter[str] = Counter()
            self.by_account: dict[str, Counter[str]] = {}

    def record(self, key: str, account_id: str, *, throttled: bool = False) -> None:
        with self._lock:
            if throttled:
                self.throttled[key] += 1
                return
            self.calls[key] += 1
            self.by_account.setdefault(account_id, Counter())[key] += 1

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

    def view(self) -> dict[str, Any]:
        out = dict(self.status)
        out["RequestId"] = self.request_id
        out["Status"] = self.final if self.done else "IN_PROGRESS"
        if self.done and self.failure_reason:
            out["FailureReason"] = self.failure_reason
        return out

    def poll(self) -> dict[str, Any]:
        if self.polls_left > 0:
            self.polls_left -= 1
        else:
            self.done = True
        return self.view()


@dataclass
class _Call:
    family: str
    operation: str
    account_id: str
    region: str
    body: bytes
    environ: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.family}:{self.operation}"

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class _Reply:
    """A complete WSGI response built by the middleware."""

    def __init__(self, status: int, body: bytes, content_type: str, extra: dict[str, str]):
        self.status, self.body, self.content_type, self.extra = status, body, content_type, extra

    def __call__(self, start_response: Callable[..., Any]) -> list[bytes]:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}
        headers = [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *self.extra.items(),
        ]
        start_response(f"{self.status} {reason.get(self.status, 'Error')}", headers)
        return [self.body]


def json_reply(payload: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), "application/x-amz-json-1.1", {})


def json_error(code: str, message: str, status: int) -> _Reply:
    body = json.dumps({"__type": code, "Message": message, "message": message}).encode()
    return _Reply(status, body, "application/x-amz-json-1.1", {"x-amzn-ErrorType": code})


def xml_error(family: str, code: str, message: str, status: int) -> _Reply:
    namespace = _XML_NAMESPACE.get(family, "")
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    return _Reply(status, body, "text/xml", {})


def caller_account_id(headers: dict[str, str], access_key: str | None) -> str:
    """The account moto serves a request from, resolved as moto's BaseResponse does.

    moto checks ``MOTO_ACCOUNT_ID``, then the ``x-moto-account-id`` header, then looks the
    access key up among every account's IAM access keys (assumed-role keys are registered in
    the role's account), falling back to its default account.
    """
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if headers.get("x-moto-account-id"):
        return headers["x-moto-account-id"]
    from moto.iam.models import get_account_id_from

    return get_account_id_from(access_key or "AKIAEXAMPLE")


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
        self._lock = threading.RLock()
        self._buckets: dict[str, TokenBucket] = {}
        self._requests: dict[str, _AsyncRequest] = {}
        self._handlers: dict[str, Callable[[_Call], _Reply | None]] = {
            "iam:DeleteUser": self._delete_user,
            "sts:AssumeRole": self._assume_role,
            "sso-admin:CreatePermissionSet": self._create_permission_set,
            "sso-admin:CreateAccountAssignment": self._create_account_assignment,
            "sso-admin:DeleteAccountAssignment": self._delete_account_assignment,
            "sso-admin:ProvisionPermissionSet": self._provision_permission_set,
            "sso-admin:DescribeAccountAssignmentCreationStatus": self._describe("creation"),
            "sso-admin:DescribeAccountAssignmentDeletionStatus": self._describe("deletion"),
            "sso-admin:DescribePermissionSetProvisioningStatus": self._describe("provisioning"),
            "sso-admin:ListAccountAssignmentCreationStatus": self._list_statuses("creation"),
            "sso-admin:ListAccountAssignmentDeletionStatus": self._list_statuses("deletion"),
            "sso-admin:ListPermissionSetProvisioningStatus": self._list_statuses("provisioning"),
        }

    # -- WSGI entry -------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        # moto reads the body again: hand it a fresh stream.
        environ["wsgi.input"] = io.BytesIO(body)
        if path.startswith("/_iamc/"):
            return self._control(environ["REQUEST_METHOD"], path, body)(start_response)
        call = self._identify(environ, body)
        if call is None:
            return self.app(environ, start_response)

        latency = self.strictness.latency_ms
        if latency:
            time.sleep(latency / 1000)
        if not self._admit(call.family):
            self.recorder.record(call.key, call.account_id, throttled=True)
            code = _THROTTLE_CODE[call.family]
            log.debug("throttled %s", call.key)
            if call.family in _QUERY_SERVICES:
                return xml_error(call.family, code, "Rate exceeded", 400)(start_response)
            return json_error(code, "Rate exceeded", 400)(start_response)
        self.recorder.record(call.key, call.account_id)

        handler = self._handlers.get(call.key)
        if handler is not None:
            reply = handler(call)
            if reply is not None:
                if reply.status >= 400:
                    self.recorder.record_error(call.key, str(reply.status))
                return reply(start_response)
        return self._pass_through(call, environ, start_response)

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
            # moto raises for operations it lacks, which its server turns into an HTML 500
            # that clients retry as a transient fault. An endpoint without the operation
            # answers 501 NotImplemented, which clients don't retry.
            self.recorder.record_error(call.key, "501")
            if call.family in _QUERY_SERVICES:
                return xml_error(call.family, "NotImplemented", str(err), 501)(start_response)
            return json_error("NotImplemented", str(err), 501)(start_response)

    def _forward(self, call: _Call) -> tuple[int, bytes]:
        """Send the call to moto and return its status and body, for rewriting."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[Any], *_: Any) -> None:
            captured["status"] = int(status.split(" ", 1)[0])

        environ = dict(call.environ)
        environ["wsgi.input"] = io.BytesIO(call.body)
        chunks = self.app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return captured["status"], body

    # -- identification, throttling ---------------------------------------------------------

    def _identify(self, environ: dict[str, Any], body: bytes) -> _Call | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        match = _CREDENTIAL.search(auth)
        if match is None:
            return None
        access_key, region, scope = match.groups()
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            prefix, _, operation = target.partition(".")
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
        return _Call(family, operation, account_id, region, body, environ)

    def _admit(self, family: str) -> bool:
        rate = self.strictness.throttle.get(family)
        if not rate:
            return True
        with self._lock:
            bucket = self._buckets.get(family)
            if bucket is None or bucket.rate != rate:
                bucket = self._buckets[family] = TokenBucket(rate)
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
        if path == "/_iamc/manifest" and method == "GET":
            return json_reply(self.manifest or {}, 200 if self.manifest else 404)
        if path == "/_iamc/health":
            return json_reply({"ok": True})
        return json_reply({"error": f"no such control endpoint: {method} {path}"}, 404)

    def reset_async(self) -> None:
        """Forget tracked asynchronous requests (after moto's state is reset)."""
        with self._lock:
            self._requests.clear()

    # -- IAM DeleteUser ---------------------------------------------------------------------

    def _delete_user(self, call: _Call) -> _Reply | None:
        if not self.strictness.delete_conflicts:
            return None
        from moto.iam.models import iam_backends
        from moto.utilities.utils import get_partition

        backend = iam_backends[call.account_id][get_partition(call.region)]
        user = backend.users.get(call.form().get("UserName", ""))
        if user is None:
            return None  # moto answers NoSuchEntity
        for dependent, message in DELETE_USER_DEPENDENTS:
            if _user_has(backend, user, dependent):
                return xml_error("iam", "DeleteConflict", message, 409)
        return None

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
        status, body = self._forward(call)
        if status != 200:
            return _Reply(status, body, "application/x-amz-json-1.1", {})
        created = json.loads(body)["AccountAssignmentCreationStatus"]
        tracked = self._track("creation", {**summary, **_without_status(created)})
        return json_reply({"AccountAssignmentCreationStatus": tracked.view()})

    def _delete_account_assignment(self, call: _Call) -> _Reply | None:
        status, body = self._forward(call)
        if status != 200:
            return _Reply(status, body, "application/x-amz-json-1.1", {})
        deleted = json.loads(body)["AccountAssignmentDeletionStatus"]
        tracked = self._track("deletion", _without_status(deleted))
        return json_reply({"AccountAssignmentDeletionStatus": tracked.view()})

    def _provision_permission_set(self, call: _Call) -> _Reply | None:
        params = call.json()
        status, body = self._forward(call)
        if status != 200:
            return _Reply(status, body, "application/x-amz-json-1.1", {})
        provisioned = _without_status(json.loads(body)["PermissionSetProvisioningStatus"])
        # AWS reports the target account only for TargetType AWS_ACCOUNT; moto reports the
        # caller's account.
        provisioned.pop("AccountId", None)
        if params.get("TargetType") == "AWS_ACCOUNT":
            provisioned["AccountId"] = params.get("TargetId")
        tracked = self._track("provisioning", provisioned)
        return json_reply({"PermissionSetProvisioningStatus": tracked.view()})

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
        # moto 5.2.5 does not model them; a later moto may.
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
