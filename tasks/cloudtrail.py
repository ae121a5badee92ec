"""Evidence that a disabled IAM user is still wanted: CloudTrail events and key last-used dates.

``LookupEvents`` searches 90 days of management events by one attribute at a time, at
2 requests/s per account and region (CloudTrail API reference): a user is looked up by its
name (console sign-ins, calls signed by any of its credentials) and by each of its access key
ids (calls signed by a key, denied or not). ``GetAccessKeyLastUsed`` moving past the time the
user was disabled is evidence too. Events made *about* the user by iamc itself are signed by
iamc's role session, not by the user, and never match.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from domain.retire import UseEvidence
from domain.workload_runtime import key_use_from_record
from domain.workloads import KeyUse
from tasks.aws import error_code

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "cloudtrail:LookupEvents",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
)

# IAM and console sign-in events are logged in us-east-1 whatever region a caller used
# (CloudTrail user guide, "global service events").
GLOBAL_EVENTS_REGION = "us-east-1"


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def lookup_events(
    client: Any, key: str, value: str, start: datetime, end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Events matching one lookup attribute between ``start`` and ``end``, newest first."""
    kwargs: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": key, "AttributeValue": value}],
        "StartTime": start,
    }
    if end is not None:
        kwargs["EndTime"] = end
    for page in client.get_paginator("lookup_events").paginate(**kwargs):
        yield from page.get("Events", [])


def evidence_from_event(account_id: str, user_name: str, event: dict[str, Any]) -> UseEvidence:
    """One CloudTrail event as evidence: who (key), when, where (IP, agent), what, outcome."""
    record: dict[str, Any] = {}
    try:
        record = json.loads(event.get("CloudTrailEvent") or "{}")
    except ValueError:
        record = {}
    identity = record.get("userIdentity") or {}
    error = record.get("errorCode")
    name = event.get("EventName") or record.get("eventName") or "?"
    if name == "ConsoleLogin":
        result = (record.get("responseElements") or {}).get("ConsoleLogin")
        error = error or ("Failure" if result == "Failure" else None)
    return UseEvidence(
        account_id=account_id,
        user_name=user_name,
        event_key=f"cloudtrail:{event.get('EventId') or record.get('eventID')}",
        source="cloudtrail",
        event_time=as_utc(event["EventTime"]),
        event_name=name,
        event_source=event.get("EventSource") or record.get("eventSource"),
        source_ip=record.get("sourceIPAddress"),
        user_agent=record.get("userAgent"),
        access_key_id=event.get("AccessKeyId") or identity.get("accessKeyId") or None,
        error_code=error,
    )


def collect_evidence(
    session: boto3.Session,
    account_id: str,
    user_name: str,
    since: datetime,
    *,
    regions: tuple[str, ...] = (GLOBAL_EVENTS_REGION,),
    access_key_ids: tuple[str, ...] = (),
) -> list[UseEvidence]:
    """Everything that shows the user was used (or tried) since ``since``.

    Args:
        session: The member account's session.
        account_id: The account.
        user_name: The IAM user.
        since: When iamc disabled it (journal time).
        regions: Where to look up events: us-east-1 (IAM, console sign-ins) and the regions
            the migration runs in.
        access_key_ids: Key ids known from the plan; the user's current keys are added.

    Returns:
        Evidence, oldest first, one per CloudTrail event or moved last-used date.
    """
    iam = session.client("iam")
    keys = set(access_key_ids)
    last_used: list[UseEvidence] = []
    try:
        listed = [
            k
            for page in iam.get_paginator("list_access_keys").paginate(UserName=user_name)
            for k in page.get("AccessKeyMetadata", [])
        ]
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
        listed = []
    for key in listed:
        keys.add(key["AccessKeyId"])
        used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get(
            "AccessKeyLastUsed", {}
        )
        when = used.get("LastUsedDate")
        if when is not None and as_utc(when) >= since:
            last_used.append(
                UseEvidence(
                    account_id=account_id,
                    user_name=user_name,
                    event_key=f"last-used:{key['AccessKeyId']}:{as_utc(when).isoformat()}",
                    source="access-key-last-used",
                    event_time=as_utc(when),
                    event_name=f"key last used: {used.get('ServiceName', '?')} "
                    f"in {used.get('Region', '?')}",
                    access_key_id=key["AccessKeyId"],
                )
            )
    found: dict[str, UseEvidence] = {}
    for region in dict.fromkeys(regions):
        trail = session.client("cloudtrail", region_name=region)
        lookups = [("Username", user_name)] + [("AccessKeyId", k) for k in sorted(keys)]
        for key, value in lookups:
            for event in lookup_events(trail, key, value, since):
                evidence = evidence_from_event(account_id, user_name, event)
                if evidence.event_time >= since:
                    found.setdefault(evidence.event_key, evidence)
    return sorted([*found.values(), *last_used], key=lambda e: (e.event_time, e.event_key))


# -- iamc workloads: where each workload key is used from ------------------------------------

# LookupEvents reaches back 90 days (CloudTrail API reference).
LOOKBACK_DAYS = 90


def key_uses(
    session: boto3.Session,
    access_key_id: str,
    regions: tuple[str, ...],
    now: datetime,
) -> list[KeyUse]:
    """Every request ``access_key_id`` signed in the last 90 days, in each region, oldest first.

    The session's ``cloudtrail`` family rate limit (``[aws] rate_limits``, 2/s per account and
    region by default; ``tasks.aws.AwsSessions``) paces the calls. IAM's events are in
    us-east-1 whatever region the caller used, so us-east-1 is always read.

    Args:
        session: The member account's session (from ``AwsSessions.for_account``).
        access_key_id: The key.
        regions: The in-scope regions.
        now: The end of the window.

    Returns:
        One :class:`KeyUse` per event (deduplicated by event id).
    """
    start = now - timedelta(days=LOOKBACK_DAYS)
    seen: dict[str, KeyUse] = {}
    for region in dict.fromkeys((GLOBAL_EVENTS_REGION, *regions)):
        trail = session.client("cloudtrail", region_name=region)
        for event in lookup_events(trail, "AccessKeyId", access_key_id, start, now):
            try:
                record = json.loads(event.get("CloudTrailEvent") or "{}")
            except ValueError:
                record = {}
            record.setdefault("eventTime", as_utc(event["EventTime"]))
            record.setdefault("eventName", event.get("EventName"))
            record.setdefault("eventSource", event.get("EventSource"))
            record.setdefault("awsRegion", region)
            use = key_use_from_record(record, access_key_id)
            seen.setdefault(event.get("EventId") or record.get("eventID") or str(len(seen)), use)
    return sorted(seen.values(), key=lambda u: u.event_time)
