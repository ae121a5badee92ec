"""Session factory: management chain, member AssumeRole, retries on throttling, rate limits."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.utils import parse_timestamp

from domain.errors import AwsAccessError
from domain.keys import mask_key_id
from tasks.aws import (
    AwsSessions,
    RateLimiters,
    new_botocore_session,
    parse_aws_timestamp,
    translate_errors,
)


def error_response(status: int, code: str, message: str = "injected") -> AWSResponse:
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    ).encode()
    return AWSResponse("https://sandbox", status, {}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


def member_account(sessions: AwsSessions) -> str:
    org = sessions.management().client("organizations")
    org.create_organization(FeatureSet="ALL")
    status = org.create_account(AccountName="dev", Email="dev@example.com")["CreateAccountStatus"]
    return status["AccountId"]


def test_member_session_assumes_the_member_role(aws):
    sessions = AwsSessions(region="us-east-1")
    account_id = member_account(sessions)
    sessions.check_access(account_id)
    identity = sessions.for_account(account_id).client("sts").get_caller_identity()
    assert identity["Account"] == account_id
    assert "OrganizationAccountAccessRole" in identity["Arn"]
    assert sessions.for_account(account_id) is sessions.for_account(account_id)
    assert sessions.management_account_id() != account_id


def test_refused_assume_role_names_role_account_and_reason(aws):
    sessions = AwsSessions(region="us-east-1", member_role="AuditRole")
    account_id = member_account(sessions)

    def deny(**_):
        return error_response(403, "AccessDenied", "not authorized to perform sts:AssumeRole")

    sessions.management()._session.register("before-send.sts.AssumeRole", deny)
    with pytest.raises(AwsAccessError) as caught:
        sessions.check_access(account_id)
    message = str(caught.value)
    assert f"cannot assume role AuditRole in account {account_id}" in message
    assert "AccessDenied" in message


def test_throttling_is_retried_by_botocore(aws):
    sessions = AwsSessions(region="us-east-1", max_attempts=5)
    attempts = []

    def throttle_twice(**_):
        attempts.append(1)
        if len(attempts) <= 2:
            return error_response(400, "Throttling", "Rate exceeded")
        return None

    session = sessions.management()
    session._session.register("before-send.iam.ListUsers", throttle_twice)
    assert session.client("iam").list_users()["Users"] == []
    assert len(attempts) == 3


def test_access_denied_is_not_retried(aws):
    sessions = AwsSessions(region="us-east-1", max_attempts=5)
    attempts = []

    def deny(**_):
        attempts.append(1)
        return error_response(403, "AccessDenied")

    session = sessions.management()
    session._session.register("before-send.iam.ListUsers", deny)
    with pytest.raises(Exception, match="AccessDenied"):
        session.client("iam").list_users()
    assert len(attempts) == 1


def test_expired_credentials_become_a_clear_error(aws):
    session = AwsSessions(region="us-east-1").management()
    session._session.register(
        "before-send.iam.ListUsers", lambda **_: error_response(403, "ExpiredToken")
    )
    with (
        pytest.raises(AwsAccessError, match=r"expired or are invalid") as caught,
        translate_errors(account_id="123456789012", operation="iam:ListUsers"),
    ):
        session.client("iam").list_users()
    assert caught.value.exit_code != 0
    assert "account 123456789012 iam:ListUsers" in str(caught.value)


def test_rate_limit_per_family_spaces_calls(aws):
    sessions = AwsSessions(region="us-east-1", rate_limits={"iam": 4})
    iam = sessions.management().client("iam")
    started = time.monotonic()
    for _ in range(6):
        iam.list_users()
    # 4 calls fit in the first second; the 5th and 6th wait for the window to move on.
    assert time.monotonic() - started >= 0.8
    sts = sessions.management().client("sts")
    started = time.monotonic()
    for _ in range(4):
        sts.get_caller_identity()
    # sts has its own limiter (20/s): not held back by iam's.
    assert time.monotonic() - started < 0.8


def test_a_saturated_limiter_keeps_close_to_its_rate():
    # The provision stage keeps sso-admin's window full: each call waits for the call 20
    # before it to leave the window. pyrate-limiter's default buffer added 50 ms to every such
    # wait (19 requests/s of 20); the spacing of call k+20 from call k stays near 1 s.
    limiter = RateLimiters({"sso-admin": 20}).limiter("sso-admin", "123456789012")
    assert limiter is not None
    stamps = []
    for _ in range(60):
        limiter.try_acquire("sso-admin", blocking=True)
        stamps.append(time.monotonic())
    lateness = sorted(stamps[k + 20] - stamps[k] - 1.0 for k in range(len(stamps) - 20))
    assert lateness[len(lateness) // 2] < 0.03


def test_mask_key_id():
    assert mask_key_id("AKIAIOSFODNN7EXAMPLE") == "AKIA…MPLE"
    assert "IOSFODNN7" not in mask_key_id("AKIAIOSFODNN7EXAMPLE")


def count_assume_role(sessions: AwsSessions) -> list[int]:
    seen: list[int] = []
    sessions.management()._session.register(
        "before-send.sts.AssumeRole", lambda **_: seen.append(1)
    )
    return seen


def test_member_credentials_are_cached_until_near_expiry(aws):
    sessions = AwsSessions(region="us-east-1")
    account_id = member_account(sessions)
    assumed = count_assume_role(sessions)
    iam = sessions.for_account(account_id).client("iam")
    for _ in range(5):
        iam.list_users()
    assert len(assumed) == 1


def test_member_credentials_are_refreshed_before_expiry(aws):
    now = [datetime.now(UTC)]
    sessions = AwsSessions(
        region="us-east-1",
        clock=lambda: now[0],
        # The fetcher's own cache must also see them as expiring (it reads the real clock).
        expiry_window_seconds=2 * 3600,
    )
    account_id = member_account(sessions)
    assumed = count_assume_role(sessions)
    iam = sessions.for_account(account_id).client("iam")
    iam.list_users()
    iam.list_users()
    assert len(assumed) == 1
    # 50 minutes on, the one-hour credentials are inside botocore's refresh window.
    now[0] += timedelta(minutes=50)
    iam.list_users()
    assert len(assumed) == 2


@pytest.mark.parametrize(
    "failure",
    [
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    ],
)
def test_connection_failures_are_unreachable_not_access_denied(failure):
    import botocore.exceptions

    from domain.errors import AwsUnreachableError

    error = getattr(botocore.exceptions, failure)(endpoint_url="https://iam.amazonaws.com")
    with (
        pytest.raises(AwsUnreachableError) as caught,
        translate_errors(account_id="111111111111", operation="iam:ListUsers"),
    ):
        raise error
    assert isinstance(caught.value, AwsAccessError)  # still an AWS problem to old handlers
    assert "cannot reach the AWS endpoint" in str(caught.value)
    assert "111111111111" in str(caught.value)


def _file_reads_of_the_shared_loader(delay: float = 0.0) -> list[str]:
    """Make the process's shared botocore loader list (and slow down) every file it reads."""
    from tasks.aws import shared_loader

    loader = shared_loader()
    real = getattr(loader, "_loader", loader)  # botocore's Loader, behind our lock
    files = real.file_loader
    read: list[str] = []

    class CountingFileLoader:
        def __getattr__(self, name):
            return getattr(files, name)

        def load_file(self, file_path):
            read.append(str(file_path))
            time.sleep(delay)
            return files.load_file(file_path)

    real.file_loader = CountingFileLoader()
    return read


def test_accounts_starting_at_once_parse_a_service_model_once(monkeypatch):
    """Eight member sessions making IAM clients together: IAM's model is read one time."""
    import threading

    import tasks.aws

    monkeypatch.setattr(tasks.aws, "_loader", None)  # a fresh process-wide loader
    # A slow parse: the other threads arrive while it runs.
    read = _file_reads_of_the_shared_loader(delay=0.02)
    sessions = AwsSessions(region="us-east-1")
    start = threading.Barrier(8)

    def make(n: int) -> None:
        session = sessions.for_account(f"{n:012d}")
        start.wait()
        session.client("iam")

    threads = [threading.Thread(target=make, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    iam_models = [f for f in read if "/iam/" in f and f.endswith("service-2")]
    assert len(iam_models) == 1, iam_models


def test_warmed_up_services_make_their_first_clients_without_reading_a_file(monkeypatch):
    """warm_up_clients leaves the models, endpoint rules and partitions in the shared loader."""
    import tasks.aws
    from tasks.aws import new_botocore_session, warm_up_clients

    def files_read_by_a_new_iam_client() -> list[str]:
        read = _file_reads_of_the_shared_loader()
        new_botocore_session().create_client(
            "iam", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
        )
        return read

    monkeypatch.setattr(tasks.aws, "_loader", None)  # a fresh process-wide loader: cold
    assert files_read_by_a_new_iam_client()  # the control: a cold loader reads files
    monkeypatch.setattr(tasks.aws, "_loader", None)
    warm_up_clients(("sts", "iam"), "us-east-1").join(timeout=60)
    assert files_read_by_a_new_iam_client() == []


def test_warm_up_also_prepares_the_member_session_policy():
    """Its declarations are read off the critical path (~60 ms of imports a first time)."""
    from tasks.aws import warm_up_clients
    from tasks.permissions import session_policy

    session_policy.cache_clear()
    warm_up_clients(("sts",), "us-east-1").join(timeout=60)
    assert session_policy.cache_info().currsize == 1


def test_a_warm_up_that_fails_prints_nothing(monkeypatch, capfd):
    import threading

    from tasks.aws import warm_up_clients

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    escaped: list = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    warm_up_clients(("sts",), "us-east-1").join(timeout=60)
    assert escaped == []
    assert "Traceback" not in capfd.readouterr().err


def test_sessions_get_botocore_builtin_handlers_from_one_registration():
    """A session made by new_botocore_session has every builtin handler a default botocore
    session registers itself, in the same order (botocore's emitter internals: this fails
    if botocore changes how it keeps them)."""
    from botocore.handlers import BUILTIN_HANDLERS

    default = botocore.session.Session().get_component("event_emitter")._emitter._handlers
    ours = new_botocore_session().get_component("event_emitter")._emitter._handlers
    names = {spec[0] for spec in BUILTIN_HANDLERS}
    found = 0
    for name in names:
        expected = list(default.prefix_search(name))
        assert list(ours.prefix_search(name)) == expected, name
        found += len(expected)
    assert found >= len(BUILTIN_HANDLERS)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-28T10:11:12Z",
        "2026-11-28T10:11:12.5Z",
        "2026-11-28T10:11:12.123456Z",
        "2024-02-29T23:59:59.000Z",
        "2026-11-28T10:11:12+02:00",  # not UTC: botocore's own parser
        "2026-11-28T10:11:12",
        "Sat, 28 Nov 2026 10:11:12 GMT",
        1795774272,
        "1795774272.25",
    ],
)
def test_timestamps_parse_as_botocore_parses_them(value):
    ours, theirs = parse_aws_timestamp(value), parse_timestamp(value)
    assert ours == theirs
    assert repr(ours) == repr(theirs)  # the same tzinfo too, and microseconds


def test_responses_use_the_fast_timestamp_parser(aws):
    iam = new_botocore_session().create_client("iam", region_name="us-east-1")
    created = iam.create_user(UserName="alice")["User"]["CreateDate"]
    assert created == parse_aws_timestamp(created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    factory = new_botocore_session().get_component("response_parser_factory")
    parser = factory.create_parser("query")
    assert parser._timestamp_parser is parse_aws_timestamp  # botocore internals, as above


def test_member_roles_are_assumed_with_one_sts_client(aws):
    """One STS client per run assumes every member role (botocore's fetcher made one each)."""
    sessions = AwsSessions(region="us-east-1")
    org = sessions.management().client("organizations")
    org.create_organization(FeatureSet="ALL")
    accounts = [
        org.create_account(AccountName=f"a{n}", Email=f"a{n}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for n in range(3)
    ]
    made: list[str] = []
    sessions.management()._session.register(
        "creating-client-class.sts", lambda **_: made.append("sts")
    )
    for account_id in accounts:
        sessions.check_access(account_id)
        identity = sessions.for_account(account_id).client("sts").get_caller_identity()
        assert identity["Account"] == account_id
    assert made == ["sts"]


def assume_role_requests(sessions: AwsSessions) -> list[dict]:
    """The parameters of every AssumeRole the management session sends."""
    sent: list[dict] = []
    sessions.management()._session.register(
        "before-parameter-build.sts.AssumeRole", lambda params, **_: sent.append(dict(params))
    )
    return sent


def test_routine_sessions_carry_a_session_policy_that_denies_restore_writes(aws):
    import json

    from tasks.permissions import restore_only_writes, session_policy

    sessions = AwsSessions(region="us-east-1", protected_tag="team:keep")
    account_id = member_account(sessions)
    sent = assume_role_requests(sessions)
    sessions.for_account(account_id).client("iam").list_users()

    (request,) = sent
    assert request["RoleArn"] == f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
    assert request["Policy"] == session_policy(False, "team:keep")
    statements = json.loads(request["Policy"])["Statement"]
    denied = {
        a
        for s in statements
        if s["Effect"] == "Deny" and "Condition" not in s and s.get("Resource") == "*"
        for a in s["Action"]
    }
    assert denied == restore_only_writes() and "iam:AttachUserPolicy" in denied
    assert "iam:ResourceTag/team:keep" in request["Policy"]
    # Re-pointing a role's trust or a group is denied outside the migration's own path.
    (scoped,) = [s for s in statements if s.get("NotResource")]
    assert "iam:UpdateAssumeRolePolicy" in scoped["Action"]
    assert "iam:AddUserToGroup" in scoped["Action"]
    assert scoped["NotResource"] == ["arn:*:iam::*:role/iamc/*", "arn:*:iam::*:group/iamc/*"]


def test_restore_sessions_assume_the_restore_role_without_the_restore_deny(aws):
    import json

    from tasks.permissions import session_policy

    sessions = AwsSessions(region="us-east-1", restore_role="iamc-restore")
    account_id = member_account(sessions)
    sent = assume_role_requests(sessions)
    restoring = sessions.for_restore(account_id)
    restoring.client("iam").list_users()
    sessions.for_account(account_id).client("iam").list_users()

    assert restoring is sessions.for_restore(account_id)
    assert restoring is not sessions.for_account(account_id)
    assert [r["RoleArn"].rsplit("/", 1)[1] for r in sent] == [
        "iamc-restore",
        "OrganizationAccountAccessRole",
    ]
    assert sent[0]["Policy"] == session_policy(True, "iamc:protected")
    sids = {s["Sid"] for s in json.loads(sent[0]["Policy"])["Statement"]}
    assert sids == {"WithinTheRole", "NeverTouchProtectedUsers"}
