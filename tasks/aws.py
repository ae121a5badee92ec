"""The one place that makes AWS sessions: management chain, member AssumeRole, retries, limits."""

from __future__ import annotations

import copy
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.hooks import HierarchicalEmitter
from botocore.utils import parse_timestamp
from dateutil.tz import tzutc

from domain.errors import AwsAccessError, AwsUnreachableError
from domain.spec import MigrationSpec
from tasks.rate_limits import RateLimiters, shared_rate_buckets

if TYPE_CHECKING:
    from state.rate_buckets import RateBuckets

log = logging.getLogger(__name__)

# Error codes that mean "your credentials are no good", not "this call is wrong".
CREDENTIAL_ERROR_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "RequestExpired",
    }
)

# Transport failures: the endpoint refused, timed out or dropped the connection (botocore's
# EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError, SSLError are
# ConnectionErrors; ReadTimeoutError, ConnectionClosedError are HTTPClientErrors). Nothing
# was refused by AWS: the fix is the network, not IAM.
UNREACHABLE_ERRORS = (BotoConnectionError, HTTPClientError)

# Refresh assumed-role credentials this long before they expire, so a long inventory or a
# provisioning wait never sends a request with credentials that lapse mid-flight.
EXPIRY_WINDOW_SECONDS = 15 * 60


class _OneLoadAtATime:
    """A botocore data loader that loads one file at a time.

    botocore's Loader caches what it parsed (``instance_cache``), but threads that miss the
    cache together each parse the same file: eight accounts starting at once parsed IAM's
    service model (~50 ms of CPU each) eight times over. Under a lock the first thread parses
    and the others read its cache.
    """

    def __init__(self, loader: Any):
        self._loader = loader
        self._lock = threading.Lock()

    def load_service_model(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._loader.load_service_model(*args, **kwargs)

    def load_data(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._loader.load_data(*args, **kwargs)

    def load_data_with_path(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._loader.load_data_with_path(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def client_config(max_attempts: int) -> Config:
    """Standard retry mode: throttling and transient errors only, with exponential backoff."""
    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
    )


_loader_lock = threading.Lock()
_loader: _OneLoadAtATime | None = None


def shared_loader() -> Any:
    """One botocore loader for the process: it caches parsed service models and endpoint data.

    A fresh botocore session reads and parses each service's JSON model again when it makes its
    first client of that service (~0.2 s for sso-admin or IAM); the models are read-only data.
    Loads go one at a time, so accounts starting together don't each parse the same model.
    """
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = _OneLoadAtATime(botocore.loaders.create_loader())
        return _loader


_builtin_handlers_lock = threading.Lock()
_builtin_handlers: HierarchicalEmitter | None = None


def _botocore_handlers() -> HierarchicalEmitter:
    """An event emitter holding botocore's builtin handlers, registered once per process.

    Every botocore session registers the ~130 builtin handlers anew, checking each handler's
    signature: ~6 ms of CPU a session, and the inventory makes one session per account. A
    session given a copy of this emitter (``event_hooks``, with ``include_builtin_handlers``
    off) has the same handlers for ~0.2 ms; botocore copies a session's emitter the same way
    for each client it makes. Nobody emits on this one, it is only copied.
    """
    global _builtin_handlers
    with _builtin_handlers_lock:
        if _builtin_handlers is None:
            emitter = HierarchicalEmitter()
            botocore.session.Session(event_hooks=emitter)  # registers the builtin handlers
            _builtin_handlers = emitter
        return _builtin_handlers


# What IAM, STS and Organizations send: ISO 8601 in UTC, to the second or finer.
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")


@functools.cache
def _botocore_utc() -> tzinfo | None:
    """The tzinfo botocore's parser gives a ``...Z`` timestamp here, if it is always UTC.

    dateutil answers ``tzutc()``, or ``tzlocal()`` where the local zone is named UTC; the
    fast path copies that choice, and stays off where local time could be anything but UTC.
    """
    found = parse_timestamp("2000-01-01T00:00:00Z").tzinfo
    if isinstance(found, tzutc) or (time.timezone == 0 and not time.daylight):
        return found
    return None


def parse_aws_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser with a fast path for ISO 8601 UTC, giving the same result.

    botocore parses every timestamp of a response with dateutil's general parser (~30 us
    each); ``datetime.fromisoformat`` reads the common form in ~2 us. Anything else goes to
    botocore's own parser, so every value parses exactly as before (tzinfo, microseconds).
    """
    utc = _botocore_utc()
    if utc is not None and isinstance(value, str) and _ISO_UTC.fullmatch(value):
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=utc)
    return parse_timestamp(value)


def new_botocore_session(profile: str | None = None) -> botocore.session.Session:
    """A botocore session sharing what a process needs only once: models, handlers, parser.

    Args:
        profile: The AWS profile (None: the default chain).

    Returns:
        A session with botocore's builtin handlers (copied, see :func:`_botocore_handlers`),
        the process's :func:`shared_loader`, and :func:`parse_aws_timestamp` for responses.
    """
    core = botocore.session.Session(
        profile=profile,
        event_hooks=copy.copy(_botocore_handlers()),
        include_builtin_handlers=False,
    )
    core.register_component("data_loader", shared_loader())
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_aws_timestamp
    )
    return core


def warm_up_clients(services: tuple[str, ...], region: str) -> threading.Thread:
    """Load, in a background thread, what the first clients of ``services`` need, and the
    member sessions' session policy.

    A process's first client of a service reads its model, endpoint rules and partitions
    (~80 ms of CPU for the first, ~20 ms for each other service). A command that starts this
    before it waits on the network (its flow run being created, the organization walked)
    takes that work off its critical path: the per-account clients then find everything in
    :func:`shared_loader`. Nothing is sent; the clients made here are dropped.
    """

    def load() -> None:
        try:
            core = new_botocore_session()
            for service in services:
                core.create_client(
                    service,
                    region_name=region,
                    # Placeholders: a client is made, never called, so no credentials are read.
                    aws_access_key_id="warm-up",
                    aws_secret_access_key="warm-up",  # noqa: S106 - not a secret
                )
            # The member sessions' session policy reads every tasks module's declarations
            # (~60 ms of imports a first time); its cache serves every protected tag after.
            from tasks.permissions import session_policy

            session_policy(restore=False)
        except Exception:
            # Only a head start (an unknown AWS_PROFILE, say): the command's own clients meet
            # the same problem and report it; a thread's traceback would only add noise.
            log.debug("warming up AWS clients stopped", exc_info=True)

    thread = threading.Thread(target=load, name="iamc-warm-up", daemon=True)
    thread.start()
    return thread


@dataclass
class AwsSessions:
    """Makes and caches boto3 sessions for the management and member accounts.

    The management session comes from the standard boto3 chain (profile, environment, SSO), so
    ``AWS_ENDPOINT_URL`` points everything at a sandbox with no special code. Member sessions
    assume ``member_role`` (``restore_role`` for :meth:`for_restore`) from the management
    session, carry a session policy that denies what that session must never do
    (:func:`tasks.permissions.session_policy`), and refresh before expiry.
    """

    region: str
    member_role: str = "OrganizationAccountAccessRole"
    # The role `iamc restore` assumes; None: member_role.
    restore_role: str | None = None
    protected_tag: str = "iamc:protected"
    # Where the roles and groups the migration creates live (the routine session's writes that
    # re-point a role or group are denied elsewhere: tasks.permissions.session_policy).
    role_path: str = "/iamc/"
    rate_limits: dict[str, float] = field(default_factory=dict)
    # The limit every process shares (a flow run on a work pool): see RateLimiters.
    shared_limits: RateBuckets | None = None
    max_attempts: int = 8
    profile: str | None = None
    role_session_name: str = "iam-centralize"
    expiry_window_seconds: int = EXPIRY_WINDOW_SECONDS
    # botocore's clock for deciding when credentials need refreshing (tests move it forward).
    clock: Callable[[], datetime] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _members: dict[str, boto3.Session] = field(default_factory=dict, repr=False)
    _restorers: dict[str, boto3.Session] = field(default_factory=dict, repr=False)
    _management: boto3.Session | None = field(default=None, repr=False)
    _sts: Any = field(default=None, repr=False)
    _management_account: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.limiters = RateLimiters(self.rate_limits, self.shared_limits)

    @classmethod
    def from_spec(cls, spec: MigrationSpec, profile: str | None = None) -> AwsSessions:
        return cls(
            region=spec.region,
            member_role=spec.member_role,
            restore_role=spec.restore_role,
            protected_tag=spec.protected_tag,
            role_path=spec.central.role_path if spec.central else "/iamc/",
            rate_limits=dict(spec.aws.rate_limits),
            shared_limits=shared_rate_buckets(spec.state),
            max_attempts=spec.aws.max_attempts,
            profile=profile,
        )

    def _configure(
        self, core: botocore.session.Session, account_id: str
    ) -> botocore.session.Session:
        core.set_default_client_config(client_config(self.max_attempts))
        core.register("before-send", self.limiters.hook_for(account_id))
        return core

    def management(self) -> boto3.Session:
        """The session of the organization's management account (boto3 credential chain)."""
        with self._lock:
            if self._management is None:
                core = new_botocore_session(profile=self.profile)
                # Limit management calls under a fixed key until we know the account id.
                self._configure(core, "management")
                self._management = boto3.Session(botocore_session=core, region_name=self.region)
            return self._management

    def management_account_id(self) -> str:
        """The management account's id, from sts:GetCallerIdentity (one call, cached)."""
        if self._management_account is None:
            with translate_errors(operation="sts:GetCallerIdentity"):
                identity = self.management().client("sts").get_caller_identity()
            self._management_account = identity["Account"]
        return self._management_account

    def role_arn(self, account_id: str, role: str | None = None) -> str:
        return f"arn:aws:iam::{account_id}:role/{role or self.member_role}"

    def for_account(self, account_id: str) -> boto3.Session:
        """A session in a member account, by AssumeRole into ``member_role``.

        Its session policy denies restore's own writes and any write on a protected user,
        whatever the role allows. Credentials are fetched lazily and refreshed
        ``EXPIRY_WINDOW_SECONDS`` before expiry; call :meth:`check_access` to fail early with
        a clear message.
        """
        return self._assumed(account_id, self.member_role, self._members, restore=False)

    def for_restore(self, account_id: str) -> boto3.Session:
        """A session in a member account for ``iamc restore`` only, by AssumeRole into
        ``restore_role``: the one session allowed to re-create users. Its session policy
        denies any write on a protected user."""
        role = self.restore_role or self.member_role
        return self._assumed(account_id, role, self._restorers, restore=True)

    def _assumed(
        self, account_id: str, role: str, cache: dict[str, boto3.Session], *, restore: bool
    ) -> boto3.Session:
        from tasks.permissions import session_policy

        with self._lock:
            cached = cache.get(account_id)
            if cached is not None:
                return cached
        source_core = self.management()._session  # boto3 exposes no public accessor
        fetcher = AssumeRoleCredentialFetcher(
            client_creator=self._assume_role_client,
            source_credentials=source_core.get_credentials(),
            role_arn=self.role_arn(account_id, role),
            extra_args={
                "RoleSessionName": self.role_session_name,
                "Policy": session_policy(restore, self.protected_tag, self.role_path),
            },
            expiry_window_seconds=self.expiry_window_seconds,
        )
        core = new_botocore_session()
        # botocore refreshes these before they expire: in the background from 15 minutes
        # before expiry, blocking from 10 minutes before (RefreshableCredentials).
        extra = {"time_fetcher": self.clock} if self.clock else {}
        core._credentials = DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method="assume-role", **extra
        )
        self._configure(core, account_id)
        session = boto3.Session(botocore_session=core, region_name=self.region)
        with self._lock:
            return cache.setdefault(account_id, session)

    def _assume_role_client(self, service_name: str, **_source_credentials: Any) -> Any:
        """The management session's STS client, made once and shared by every account.

        botocore's fetcher asks for a new client at each AssumeRole, passing the management
        session's credentials frozen; this client signs with those same credentials (kept
        fresh by the session) and costs one client per run, not one per account. botocore
        clients are thread-safe.
        """
        management = self.management()
        with self._lock:
            if self._sts is None:
                self._sts = management.client(service_name)
            return self._sts

    def check_access(self, account_id: str) -> None:
        """Assume the member role now.

        Raises:
            AwsUnreachableError: STS could not be reached.
            AwsAccessError: "cannot assume role X in account Y: reason".
        """
        session = self.for_account(account_id)
        try:
            session.get_credentials().get_frozen_credentials()
        except UNREACHABLE_ERRORS as err:
            with self._lock:
                self._members.pop(account_id, None)
            raise unreachable(err, account_id=account_id, operation="sts:AssumeRole") from err
        except ClientError as err:
            with self._lock:
                self._members.pop(account_id, None)
            code = err.response.get("Error", {}).get("Code", "")
            message = err.response.get("Error", {}).get("Message", str(err))
            raise AwsAccessError(
                f"cannot assume role {self.member_role} in account {account_id}: {code}: {message}",
                account_id=account_id,
            ) from err


def unreachable(
    err: BaseException, account_id: str | None = None, operation: str | None = None
) -> AwsUnreachableError:
    """The error for a transport failure: says the endpoint, not AWS, is the problem."""
    return AwsUnreachableError(
        f"cannot reach the AWS endpoint ({type(err).__name__}: {err})",
        account_id=account_id,
        operation=operation,
    )


@contextmanager
def translate_errors(account_id: str | None = None, operation: str | None = None) -> Iterator[None]:
    """Turn credential and connection failures into :class:`AwsAccessError` with context.

    A transport failure (connection refused, timeouts) becomes :class:`AwsUnreachableError`,
    so an outage is never reported as a refusal. Other ``ClientError`` codes pass through:
    the caller knows what they mean.
    """
    try:
        yield
    except NoCredentialsError as err:
        raise AwsAccessError(
            "no AWS credentials found: set AWS_PROFILE, run 'aws sso login', or export "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            account_id=account_id,
            operation=operation,
        ) from err
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in CREDENTIAL_ERROR_CODES:
            raise AwsAccessError(
                f"AWS credentials were refused ({code}): they have expired or are invalid; "
                "refresh them (e.g. 'aws sso login') and run the command again",
                account_id=account_id,
                operation=operation,
            ) from err
        raise
    except UNREACHABLE_ERRORS as err:
        raise unreachable(err, account_id=account_id, operation=operation) from err
    except BotoCoreError as err:
        raise AwsAccessError(str(err), account_id=account_id, operation=operation) from err


def pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    """Every item under ``key`` of every page of a list call (STYLE: every list call paginates).

    Args:
        client: A boto3 client.
        operation: The paginated operation's snake_case name (``list_access_keys``).
        key: The list in each page (``AccessKeyMetadata``).
        **kwargs: The operation's parameters.
    """
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])


def marker_pages(
    method: Callable[..., Any], key: str, start: str | None = None, **kwargs: Any
) -> Iterator[Any]:
    """Like :func:`pages`, for an IAM list call botocore has no paginator for.

    IAM's Marker/IsTruncated protocol by hand (IAM API reference, "Using pagination"):
    ``ListServiceSpecificCredentials`` gained Marker and MaxItems with ``AllUsers`` but has no
    paginator in botocore 1.44.

    Args:
        method: The client's bound method (``iam.list_service_specific_credentials``).
        key: The list in each page.
        start: The Marker to start from (the pages after one already read); None: the first.
        **kwargs: The operation's parameters.
    """
    marker: dict[str, str] = {"Marker": start} if start else {}
    while True:
        page = method(**kwargs, **marker)
        yield from page.get(key, [])
        if not page.get("IsTruncated") or not page.get("Marker"):
            return
        marker = {"Marker": page["Marker"]}


def error_code(err: ClientError) -> str:
    """The AWS error code of a ClientError ('' if absent)."""
    return str(err.response.get("Error", {}).get("Code", ""))


def error_message(err: ClientError) -> str:
    """``Code: message`` of a ClientError, as AWS gave them (for journals and status lines)."""
    return f"{error_code(err)}: {err.response.get('Error', {}).get('Message', err)}"


def failure_reason(err: BaseException) -> str:
    """What an operator reads for an account's failure: AWS's code and message, or the cause.

    ``AccessDenied: User: … is not authorized to perform: sts:AssumeRole on resource: …`` for
    a refusal (as AWS words it), ``cannot reach the AWS endpoint (…)`` for an outage, and the
    error's own text for ours. No traceback: the operator acts on the reason.
    """
    if isinstance(err, ClientError):
        operation = getattr(err, "operation_name", "") or ""
        return (f"{operation}: " if operation else "") + error_message(err)
    if isinstance(err, UNREACHABLE_ERRORS):
        return str(unreachable(err))
    if isinstance(err, NoCredentialsError):
        return "no AWS credentials found"
    text = str(err)
    return text if text else type(err).__name__
