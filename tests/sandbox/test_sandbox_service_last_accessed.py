"""IAM's service-last-accessed jobs in the sandbox: answered from what the user's keys did."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.control import SandboxControl

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:*", "ec2:Describe*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"},
        {"Effect": "Deny", "Action": "kms:*", "Resource": "*"},
    ],
}


@pytest.fixture
def person(client) -> tuple[str, str, str]:
    """A person with an active key and a policy granting s3, ec2 and lambda."""
    iam = client("iam")
    name = f"person-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="work", PolicyDocument=json.dumps(POLICY))
    iam.create_access_key(UserName=name)
    return name, arn, arn.split(":")[4]


def _details(iam: Any, arn: str, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = iam.generate_service_last_accessed_details(Arn=arn, Granularity="ACTION_LEVEL")
    first = iam.get_service_last_accessed_details(JobId=job["JobId"])
    assert first["JobStatus"] == "IN_PROGRESS"
    assert first["ServicesLastAccessed"] == []
    services: list[dict[str, Any]] = []
    marker: dict[str, str] = {}
    while True:
        page = iam.get_service_last_accessed_details(JobId=job["JobId"], **kwargs, **marker)
        assert page["JobStatus"] == "COMPLETED"
        services += page["ServicesLastAccessed"]
        if not page.get("IsTruncated"):
            return page, services
        marker = {"Marker": page["Marker"]}


def test_played_use_is_reported_and_granted_services_listed(client, control, person) -> None:
    name, arn, account_id = person
    played = control.play_user_usage(
        account_id,
        name,
        [
            {"service": "s3", "operation": "ListBuckets", "days_ago": 3},
            {"service": "ec2", "operation": "DescribeInstances", "days_ago": 5},
            {"service": "sts", "operation": "GetCallerIdentity", "days_ago": 2},
        ],
    )
    assert [p["error"] for p in played["played"]] == [None, None, None]
    page, services = _details(client("iam"), arn, MaxItems=1)
    assert page["JobType"] == "ACTION_LEVEL"
    by_ns = {s["ServiceNamespace"]: s for s in services}
    # Granted (s3, ec2, lambda; kms only denied) and used (sts, which needs no grant).
    assert sorted(by_ns) == ["ec2", "lambda", "s3", "sts"]
    now = datetime.now(UTC)
    s3 = by_ns["s3"]
    assert s3["ServiceName"] == "Amazon S3"
    assert abs(now - s3["LastAuthenticated"] - timedelta(days=3)) < timedelta(minutes=5)
    assert s3["LastAuthenticatedEntity"] == arn
    assert s3["LastAuthenticatedRegion"] == "us-east-1"
    assert s3["TotalAuthenticatedEntities"] == 1
    assert [a["ActionName"] for a in s3["TrackedActionsLastAccessed"]] == ["ListAllMyBuckets"]
    assert [a["ActionName"] for a in by_ns["ec2"]["TrackedActionsLastAccessed"]] == [
        "DescribeInstances"
    ]
    # Granted, never used: listed without a last use, and no tracked action.
    assert "LastAuthenticated" not in by_ns["lambda"]
    assert by_ns["lambda"]["TotalAuthenticatedEntities"] == 0
    assert by_ns["lambda"]["TrackedActionsLastAccessed"] == []
    # STS is not tracked action by action.
    assert "TrackedActionsLastAccessed" not in by_ns["sts"]
    assert "LastAuthenticated" in by_ns["sts"]


def test_cloudtrail_shows_the_played_calls_by_username(client, control, person) -> None:
    name, _, account_id = person
    control.play_user_usage(account_id, name, [("s3", "ListBuckets"), ("ec2", "DescribeVpcs")])
    events = client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": name}]
    )["Events"]
    assert sorted((e["EventSource"], e["EventName"]) for e in events) == [
        ("ec2.amazonaws.com", "DescribeVpcs"),
        ("s3.amazonaws.com", "ListBuckets"),
    ]


def test_inactive_key_is_not_use_and_unknown_things_are_refused(client, sandbox) -> None:
    import boto3

    iam = client("iam")
    name = f"person-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    with pytest.raises(ClientError):
        sts.get_caller_identity()  # refused before it authenticates: not use
    _, services = _details(iam, arn)
    assert services == []  # no policy, no use
    job = iam.generate_service_last_accessed_details(Arn=arn)["JobId"]
    iam.get_service_last_accessed_details(JobId=job)
    with pytest.raises(ClientError) as err:
        iam.get_service_last_accessed_details(JobId=job, Marker="garbage")
    assert err.value.response["Error"]["Code"] == "InvalidInput"
    with pytest.raises(ClientError) as err:
        iam.get_service_last_accessed_details(JobId=str(uuid.uuid4()))
    assert err.value.response["Error"]["Code"] == "NoSuchEntity"
    with pytest.raises(ClientError) as err:
        iam.generate_service_last_accessed_details(Arn=arn.replace(name, "nobody-here"))
    assert err.value.response["Error"]["Code"] == "NoSuchEntity"


def test_a_person_without_a_key_is_played_as_console_calls_and_keeps_no_key(
    client, control: SandboxControl
) -> None:
    iam = client("iam")
    name = f"nokey-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    played = control.play_user_usage(arn.split(":")[4], name, [("iam", "ListRoles")])
    assert played["console"] is True and played["played"][0]["error"] is None
    # Recorded as the person's use, as AWS records a console session's calls...
    _, services = _details(iam, arn)
    assert [s["ServiceNamespace"] for s in services if s.get("LastAuthenticated")] == ["iam"]
    # ... and the session's credentials are gone: the user still has no access key.
    assert iam.list_access_keys(UserName=name)["AccessKeyMetadata"] == []
    with pytest.raises(Exception, match="no IAM user"):
        control.play_user_usage(arn.split(":")[4], "nobody-here")
