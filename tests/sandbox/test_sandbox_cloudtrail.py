"""CloudTrail in the sandbox: inactive keys refused, quarantined users denied, LookupEvents."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox.control import SandboxControl
from sandbox.server import Sandbox

ACCOUNT = "123456789012"  # moto's default account, where the "testing" credentials land
AGENT = "iamc-bake-test/1.0"
_names = itertools.count(1)
_DENY_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
)


def _code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def clock(control: SandboxControl) -> Iterator[SandboxControl]:
    yield control
    control.reset_clock()


@pytest.fixture
def as_user(sandbox: Sandbox, client) -> Any:
    """``as_user(prefix)``: a new IAM user with a key, and a client factory signing with it."""

    def make(prefix: str) -> tuple[str, str, Any]:
        iam = client("iam")
        user = f"{prefix}-{next(_names)}"
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        session = boto3.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name="us-east-1",
        )

        def user_client(service: str) -> Any:
            config = Config(retries={"mode": "standard", "max_attempts": 1}, user_agent_extra=AGENT)
            return session.client(service, endpoint_url=sandbox.url, config=config)

        return user, key["AccessKeyId"], user_client

    return make


def _lookup(client, key: str, value: str, **kwargs: Any) -> list[dict[str, Any]]:
    trail = client("cloudtrail")
    return trail.lookup_events(
        LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}], **kwargs
    )["Events"]


def test_inactive_key_is_refused_and_recorded(client, control, as_user) -> None:
    user, key_id, user_client = as_user("inactive")
    client("iam").update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")

    with pytest.raises(ClientError) as refused:
        user_client("iam").list_users()
    assert _code(refused) == ("InvalidClientTokenId", 403)
    assert refused.value.response["Error"]["Message"] == (
        "The security token included in the request is invalid."
    )
    with pytest.raises(ClientError) as json_refused:
        user_client("sso-admin").list_instances()
    assert _code(json_refused)[0] == "UnrecognizedClientException"

    by_key = _lookup(client, "AccessKeyId", key_id)
    by_user = _lookup(client, "Username", user)
    assert [e["EventId"] for e in by_key] == [e["EventId"] for e in by_user]
    assert [e["EventName"] for e in by_key] == ["ListInstances", "ListUsers"]  # newest first
    event = by_key[1]
    assert event["EventSource"] == "iam.amazonaws.com"
    assert event["Username"] == user and event["AccessKeyId"] == key_id
    assert event["ReadOnly"] == "true"
    detail = json.loads(event["CloudTrailEvent"])
    assert detail["errorCode"] == "InvalidClientTokenId"
    assert detail["errorMessage"] == "The security token included in the request is invalid."
    assert detail["userIdentity"]["type"] == "IAMUser"
    assert detail["userIdentity"]["userName"] == user
    assert detail["userIdentity"]["accessKeyId"] == key_id
    assert detail["userIdentity"]["accountId"] == ACCOUNT
    assert detail["userIdentity"]["arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user}"
    assert detail["sourceIPAddress"] == "127.0.0.1"
    assert AGENT in detail["userAgent"]
    assert detail["awsRegion"] == "us-east-1"
    assert by_key[0]["EventSource"] == "sso.amazonaws.com"

    # Whatever the service: S3 (REST, no Action) refuses the key in its own words.
    with pytest.raises(ClientError) as s3_refused:
        user_client("s3").list_buckets()
    assert _code(s3_refused) == ("InvalidAccessKeyId", 403)

    # Active again, the key works.
    client("iam").update_access_key(UserName=user, AccessKeyId=key_id, Status="Active")
    assert user_client("iam").get_user()["User"]["UserName"] == user
    assert user_client("sso-admin").list_instances()["Instances"]


def test_quarantined_user_is_denied_and_recorded(client, control, as_user) -> None:
    user, key_id, user_client = as_user("quarantined")
    client("iam").put_user_policy(
        UserName=user, PolicyName="iamc-quarantine", PolicyDocument=_DENY_ALL
    )
    with pytest.raises(ClientError) as denied:
        user_client("iam").list_access_keys()
    assert _code(denied) == ("AccessDenied", 403)
    assert "explicit deny" in denied.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as json_denied:
        user_client("sso-admin").list_instances()
    assert _code(json_denied)[0] == "AccessDeniedException"
    # No policy can deny GetCallerIdentity.
    assert user_client("sts").get_caller_identity()["Arn"].endswith(f":user/{user}")

    events = _lookup(client, "Username", user)
    names = [e["EventName"] for e in events]
    assert names[1:] == ["ListInstances", "ListAccessKeys"]
    denied_events = [json.loads(e["CloudTrailEvent"]) for e in events[1:]]
    assert {d["errorCode"] for d in denied_events} == {"AccessDenied"}
    assert all(AGENT in d["userAgent"] for d in denied_events)
    assert all(d["sourceIPAddress"] == "127.0.0.1" for d in denied_events)
    assert _lookup(client, "AccessKeyId", key_id)[1]["EventId"] == events[1]["EventId"]

    client("iam").delete_user_policy(UserName=user, PolicyName="iamc-quarantine")
    assert user_client("iam").list_access_keys()["AccessKeyMetadata"]


def test_normal_calls_are_recorded_and_move_last_used(client, clock, as_user) -> None:
    user, key_id, user_client = as_user("worker")
    iam = client("iam")
    assert (
        "LastUsedDate" not in iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    )
    user_client("iam").get_user()
    used = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert used["ServiceName"] == "iam" and used["Region"] == "us-east-1"
    first = used["LastUsedDate"]

    later = clock.shift_clock(timedelta(days=10).total_seconds())
    user_client("sts").get_caller_identity()
    used = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]
    assert used["ServiceName"] == "sts"
    assert used["LastUsedDate"] - first > timedelta(days=9)
    assert abs(used["LastUsedDate"] - later) < timedelta(minutes=1)

    [sts_call, iam_call] = _lookup(client, "Username", user)
    assert (sts_call["EventName"], iam_call["EventName"]) == ("GetCallerIdentity", "GetUser")
    assert "errorCode" not in json.loads(iam_call["CloudTrailEvent"])
    assert sts_call["EventTime"] - iam_call["EventTime"] > timedelta(days=9)
    # Calls signed with the admin's (non-IAM-user) credentials are not recorded.
    assert _lookup(client, "Username", "testing") == []


def test_lookup_pages_newest_first(client, control, as_user) -> None:
    user, _, user_client = as_user("pager")
    iam = user_client("iam")
    for _ in range(7):
        iam.get_user()
    trail = client("cloudtrail")
    attribute = [{"AttributeKey": "Username", "AttributeValue": user}]
    first = trail.lookup_events(LookupAttributes=attribute, MaxResults=3)
    assert len(first["Events"]) == 3 and first["NextToken"]
    pages = list(
        trail.get_paginator("lookup_events").paginate(
            LookupAttributes=attribute, PaginationConfig={"PageSize": 3}
        )
    )
    assert [len(p["Events"]) for p in pages] == [3, 3, 1]
    events = [e for p in pages for e in p["Events"]]
    assert len({e["EventId"] for e in events}) == 7
    times = [e["EventTime"] for e in events]
    assert times == sorted(times, reverse=True)
    with pytest.raises(ClientError) as too_many:
        trail.lookup_events(LookupAttributes=attribute, MaxResults=51)
    assert _code(too_many)[0] == "InvalidMaxResultsException"
    with pytest.raises(ClientError) as two:
        trail.lookup_events(
            LookupAttributes=[*attribute, {"AttributeKey": "EventName", "AttributeValue": "x"}]
        )
    assert _code(two)[0] == "InvalidLookupAttributesException"


def test_lookup_filters_by_name_source_and_time(client, control, as_user) -> None:
    _, key_id, user_client = as_user("filters")
    before = datetime.now(UTC) - timedelta(seconds=1)
    user_client("iam").get_user()
    user_client("sts").get_caller_identity()
    names = {e["EventName"] for e in _lookup(client, "EventSource", "sts.amazonaws.com")}
    assert "GetCallerIdentity" in names and "GetUser" not in names
    mine = [
        e
        for e in _lookup(client, "EventName", "GetUser", StartTime=before)
        if e["AccessKeyId"] == key_id
    ]
    assert len(mine) == 1
    assert _lookup(client, "AccessKeyId", key_id, EndTime=before) == []
    read_only = _lookup(client, "ReadOnly", "true", StartTime=before)
    assert key_id in {e.get("AccessKeyId") for e in read_only}


def test_console_login_failure_and_the_90_day_window(client, clock, as_user) -> None:
    user, _, _ = as_user("console")
    now = datetime.now(UTC)
    clock.record_console_login_failure(ACCOUNT, user, event_time=now - timedelta(days=100))
    recorded = clock.record_console_login_failure(
        ACCOUNT, user, event_time=now - timedelta(days=80), source_ip="203.0.113.9"
    )
    events = _lookup(client, "Username", user)
    assert [e["EventId"] for e in events] == [recorded["EventId"]]  # 100 days is out of reach
    detail = json.loads(events[0]["CloudTrailEvent"])
    assert events[0]["EventName"] == "ConsoleLogin"
    assert events[0]["EventSource"] == "signin.amazonaws.com"
    assert detail["responseElements"] == {"ConsoleLogin": "Failure"}
    assert detail["errorMessage"] == "Failed authentication"
    assert detail["sourceIPAddress"] == "203.0.113.9"
    assert detail["userIdentity"]["userName"] == user

    clock.shift_clock(timedelta(days=11).total_seconds())
    assert _lookup(client, "Username", user) == []


def test_lookup_is_per_account(client, control, as_user, sandbox) -> None:
    user, _, user_client = as_user("elsewhere")
    user_client("iam").get_user()
    other = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    ).client("cloudtrail", endpoint_url=sandbox.url)
    other.meta.events.register(
        "before-sign.cloudtrail.*",
        lambda request, **_: request.headers.__setitem__("x-moto-account-id", "210987654321"),
    )
    attribute = [{"AttributeKey": "Username", "AttributeValue": user}]
    assert other.lookup_events(LookupAttributes=attribute)["Events"] == []
    assert len(_lookup(client, "Username", user)) == 1


def test_lookup_is_throttled_at_two_per_second(client, control, session, sandbox) -> None:
    control.configure(throttle=True)
    assert control.config()["throttle"]["cloudtrail"] == 2
    # total_max_attempts counts the first attempt (retries' max_attempts does not): no retry.
    no_retry = Config(retries={"mode": "standard", "total_max_attempts": 1})
    trail = session.client("cloudtrail", endpoint_url=sandbox.url, config=no_retry)
    control.reset_calls()
    admitted, throttled = 0, []
    started = time.monotonic()
    for _ in range(12):
        try:
            trail.lookup_events(MaxResults=1)
            admitted += 1
        except ClientError as err:
            throttled.append(err.response)
    elapsed = time.monotonic() - started
    assert throttled, "twelve calls in a row were never throttled"
    assert {(r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]) for r in throttled} == {
        ("ThrottlingException", 400)
    }
    # A token bucket of 2/s admits at most its burst of 2 plus 2 a second.
    assert admitted <= 2 + 2 * elapsed + 1
    assert control.calls()["throttled"]["cloudtrail:LookupEvents"] == len(throttled)
    # With standard retries a caller gets through.
    retried = client("cloudtrail", max_attempts=10)
    for _ in range(4):
        retried.lookup_events(MaxResults=1)


def test_credential_checks_can_be_switched_off(client, control, as_user) -> None:
    control.configure(credential_checks=False)
    user, key_id, user_client = as_user("lenient")
    client("iam").update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")
    assert user_client("iam").get_user()["User"]["UserName"] == user  # moto's own leniency
    # Still recorded, without an error.
    [event] = _lookup(client, "AccessKeyId", key_id)
    assert "errorCode" not in json.loads(event["CloudTrailEvent"])
