"""Evidence from CloudTrail LookupEvents and key last-used dates (botocore Stubber)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
from botocore.stub import ANY, Stubber

from tasks.cloudtrail import collect_evidence, evidence_from_event

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "AKIAAAAAAAAAAAAAJANE"


def _event(event_id: str, name: str, when: datetime, record: dict, key: str | None = None) -> dict:
    out = {
        "EventId": event_id,
        "EventName": name,
        "EventTime": when,
        "EventSource": record.get("eventSource", "iam.amazonaws.com"),
        "Username": "jane",
        "CloudTrailEvent": json.dumps(record),
    }
    if key:
        out["AccessKeyId"] = key
    return out


def test_a_failed_console_sign_in_is_read_as_such():
    record = {
        "eventSource": "signin.amazonaws.com",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "Mozilla/5.0",
        "responseElements": {"ConsoleLogin": "Failure"},
        "userIdentity": {"type": "IAMUser", "userName": "jane"},
    }
    found = evidence_from_event("111111111111", "jane", _event("e1", "ConsoleLogin", SINCE, record))
    assert (found.event_name, found.error_code, found.source_ip) == (
        "ConsoleLogin",
        "Failure",
        "198.51.100.7",
    )


def test_evidence_by_user_name_and_key_id_once_each_plus_a_moved_last_used_date():
    session = boto3.Session(
        aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1"
    )
    iam = session.client("iam")
    trail = session.client("cloudtrail")
    later = SINCE + timedelta(days=2)
    denied = {
        "errorCode": "AccessDenied",
        "sourceIPAddress": "203.0.113.9",
        "userAgent": "backup/1.0",
        "userIdentity": {"accessKeyId": KEY},
    }
    with Stubber(iam) as iam_stub, Stubber(trail) as trail_stub:
        iam_stub.add_response(
            "list_access_keys",
            {"AccessKeyMetadata": [{"UserName": "jane", "AccessKeyId": KEY, "Status": "Inactive"}]},
            {"UserName": "jane"},
        )
        iam_stub.add_response(
            "get_access_key_last_used",
            {
                "UserName": "jane",
                "AccessKeyLastUsed": {
                    "LastUsedDate": later,
                    "ServiceName": "s3",
                    "Region": "eu-west-1",
                },
            },
            {"AccessKeyId": KEY},
        )
        event = _event("e2", "ListBuckets", later, denied, KEY)
        # The same denied call is found by user name and by key id: one piece of evidence.
        for attribute in ("Username", "AccessKeyId"):
            trail_stub.add_response(
                "lookup_events",
                {"Events": [event]},
                {
                    "LookupAttributes": [{"AttributeKey": attribute, "AttributeValue": ANY}],
                    "StartTime": SINCE,
                },
            )
        with mock.patch.object(
            session, "client", side_effect=lambda name, **_: iam if name == "iam" else trail
        ):
            found = collect_evidence(session, "111111111111", "jane", SINCE)
    assert [e.source for e in found] == ["cloudtrail", "access-key-last-used"]
    call = found[0]
    assert (
        call.event_name,
        call.error_code,
        call.source_ip,
        call.user_agent,
        call.access_key_id,
    ) == (
        "ListBuckets",
        "AccessDenied",
        "203.0.113.9",
        "backup/1.0",
        KEY,
    )
    assert "s3 in eu-west-1" in found[1].event_name
