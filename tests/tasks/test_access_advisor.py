"""Reading usage: jobs started together and polled in rounds, FAILED named, pages followed,
the window honoured, CloudTrail's actions joined (latest wins)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber

from sandbox.control import SandboxControl
from sandbox.server import Sandbox
from tasks.access_advisor import (
    JobPoll,
    joined,
    read_account_usage,
    usage_from_report,
    wait_for_jobs,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FAST = JobPoll(initial=0.01, maximum=0.02, timeout=5)


def _job(status: str, services=(), **extra):
    return {
        "JobStatus": status,
        "JobCreationDate": NOW,
        "JobCompletionDate": NOW,
        "ServicesLastAccessed": list(services),
        **extra,
    }


def test_jobs_are_polled_in_rounds_paged_and_failures_named() -> None:
    iam = boto3.client(
        "iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    job_a, job_b = str(uuid.uuid4()), str(uuid.uuid4())
    s3 = {"ServiceName": "Amazon S3", "ServiceNamespace": "s3", "LastAuthenticated": NOW}
    ec2 = {"ServiceName": "Amazon EC2", "ServiceNamespace": "ec2"}
    with Stubber(iam) as stub:
        # Round 1: a in progress, b failed. Round 2: a completed, over two pages.
        stub.add_response(
            "get_service_last_accessed_details",
            _job("IN_PROGRESS"),
            {"JobId": job_a, "MaxItems": 1000},
        )
        stub.add_response(
            "get_service_last_accessed_details",
            _job("FAILED", Error={"Code": "ServiceFailure", "Message": "boom"}),
            {"JobId": job_b, "MaxItems": 1000},
        )
        stub.add_response(
            "get_service_last_accessed_details",
            _job("COMPLETED", [s3], IsTruncated=True, Marker="m1"),
            {"JobId": job_a, "MaxItems": 1000},
        )
        stub.add_response(
            "get_service_last_accessed_details",
            _job("COMPLETED", [ec2]),
            {"JobId": job_a, "MaxItems": 1000, "Marker": "m1"},
        )
        done, failed = wait_for_jobs(iam, {"a": job_a, "b": job_b}, FAST)
        stub.assert_no_pending_responses()
    assert [s["ServiceNamespace"] for s in done["a"]] == ["s3", "ec2"]
    assert failed == {"b": "service-last-accessed job FAILED: ServiceFailure: boom"}


def test_a_job_never_done_is_unread_not_empty() -> None:
    iam = boto3.client(
        "iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(iam) as stub:
        for _ in range(50):
            stub.add_response("get_service_last_accessed_details", _job("IN_PROGRESS"))
        done, failed = wait_for_jobs(
            iam, {"a": str(uuid.uuid4())}, JobPoll(initial=0.01, maximum=0.01, timeout=0.05)
        )
    assert done == {}
    assert "still IN_PROGRESS" in failed["a"]


def test_the_window_and_the_join() -> None:
    old, recent, newer = NOW - timedelta(days=120), NOW - timedelta(days=3), NOW - timedelta(1)
    report = usage_from_report(
        "111111111111",
        "alice",
        [
            {
                "ServiceNamespace": "s3",
                "LastAuthenticated": recent,
                "TrackedActionsLastAccessed": [
                    {"ActionName": "ListAllMyBuckets", "LastAccessedTime": recent},
                    {"ActionName": "CreateBucket", "LastAccessedTime": old},
                ],
            },
            {"ServiceNamespace": "ec2", "LastAuthenticated": old, "TrackedActionsLastAccessed": []},
            {"ServiceNamespace": "lambda", "TrackedActionsLastAccessed": []},
            {"ServiceNamespace": "sqs"},
        ],
        since=NOW - timedelta(days=90),
    )
    assert report.services == {"s3": "2026-11-28T00:00:00Z"}
    assert report.actions == {"s3:ListAllMyBuckets": "2026-11-28T00:00:00Z"}
    assert report.action_level == frozenset({"s3", "ec2", "lambda"})
    both = joined(
        report, {"s3:ListAllMyBuckets": "2026-11-30T00:00:00Z", "sts:GetCallerIdentity": "x"}
    )
    assert both.actions["s3:ListAllMyBuckets"] == "2026-11-30T00:00:00Z"  # the latest wins
    assert both.services["s3"] == "2026-11-30T00:00:00Z"
    assert both.services["sts"] == "x"
    assert newer > recent


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(port=0) as running:
        yield running


def test_read_account_usage_against_the_sandbox(sandbox: Sandbox) -> None:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    iam = session.client("iam", endpoint_url=sandbox.url)
    users = {}
    for name in ("alice", "bob", "carol"):
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        iam.put_user_policy(
            UserName=name,
            PolicyName="work",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        iam.create_access_key(UserName=name)
        users[name] = arn
    account_id = users["alice"].split(":")[4]
    control = SandboxControl(sandbox.url)
    control.play_user_usage(account_id, "alice", [("s3", "ListBuckets"), ("ec2", "DescribeVpcs")])
    control.play_user_usage(account_id, "bob", [("sts", "GetCallerIdentity")], days_ago=200)
    iam.delete_access_key(
        UserName="carol",
        AccessKeyId=iam.list_access_keys(UserName="carol")["AccessKeyMetadata"][0]["AccessKeyId"],
    )
    iam.delete_user_policy(UserName="carol", PolicyName="work")
    iam.delete_user(UserName="carol")

    class Endpoint(boto3.Session):
        def client(self, *args, **kwargs):  # type: ignore[override]
            return session.client(*args, endpoint_url=sandbox.url, **kwargs)

    read = read_account_usage(
        Endpoint(), account_id, users, window_days=90, now=datetime.now(UTC), poll=FAST
    )
    by_user = {u.user: u for u in read.users}
    assert sorted(by_user["alice"].actions) == ["ec2:DescribeVpcs", "s3:ListAllMyBuckets"]
    assert sorted(by_user["alice"].services) == ["ec2", "s3"]
    assert "s3" in by_user["alice"].action_level
    assert by_user["bob"].services == {} and by_user["bob"].actions == {}  # outside the window
    assert read.unread == {"carol": read.unread["carol"]}
    assert "no longer exists" in read.unread["carol"]
