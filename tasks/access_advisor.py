"""What each IAM user used: IAM's service-last-accessed jobs and CloudTrail, joined per user.

Per account: ``GenerateServiceLastAccessedDetails`` (``Granularity=ACTION_LEVEL``) for every
user first, then ``GetServiceLastAccessedDetails`` for all of them in rounds until none is
``IN_PROGRESS`` (paged by Marker), so 50 users wait for their jobs together, not one after
another; meanwhile, on a second thread (CloudTrail has its own rate: 2 LookupEvents/s per
account and region), each user's management events in the window by ``Username``. IAM's
``iam`` and ``cloudtrail`` rate limits per account (``tasks.aws.AwsSessions``) pace the calls;
throttling is retried by botocore's standard mode, nothing else here. Read only.

Access Advisor reports services (and actions only for S3, EC2, IAM and Lambda) over up to 400
days; CloudTrail's LookupEvents names the actions of management events over 90 days (a
window longer than that reads actions of the last 90 days only). Both count a call whoever
answered it; a call refused before it authenticated is no use, and neither is one denied.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_exponential

from domain.usage import UserUsage, iso_utc
from domain.usage_events import iam_action, namespace_of
from tasks.aws import error_code, error_message, marker_pages
from tasks.cloudtrail import GLOBAL_EVENTS_REGION, as_utc, lookup_events

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GenerateServiceLastAccessedDetails",
    "iam:GetServiceLastAccessedDetails",
    "cloudtrail:LookupEvents",
)

# Job statuses (IAM API reference, GetServiceLastAccessedDetails: JobStatus).
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
# GetServiceLastAccessedDetails pages at most 1,000 services (MaxItems).
PAGE_SIZE = 1000
# A CloudTrail event that is no use of a permission: refused before authenticating, or denied
# (CloudTrail user guide, "CloudTrail record contents": errorCode).
_NOT_USE = ("InvalidClientTokenId", "UnrecognizedClientException", "AccessDenied", "Unauthorized")


@dataclass(frozen=True)
class JobPoll:
    """How the status of the account's jobs is polled: rounds backing off from ``initial`` up
    to ``maximum`` seconds apart, for ``timeout`` seconds at most (AWS builds a report in
    seconds to minutes)."""

    initial: float = 0.5
    maximum: float = 10.0
    timeout: float = 600.0


@dataclass
class AccountUsage:
    """What one account's read found: usage per user, and users not read with why."""

    users: list[UserUsage] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)  # user name -> why


def start_jobs(iam: Any, users: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Start one action-level job per user.

    Args:
        iam: The account's IAM client.
        users: user name -> ARN.

    Returns:
        (user name -> job id, user name -> why no job: the user is gone since the inventory).
    """
    jobs: dict[str, str] = {}
    unread: dict[str, str] = {}
    for name, arn in users.items():
        try:
            answer = iam.generate_service_last_accessed_details(Arn=arn, Granularity="ACTION_LEVEL")
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            unread[name] = f"no longer exists ({error_message(err)})"
            continue
        jobs[name] = answer["JobId"]
    return jobs, unread


def _still_in_progress(pending: dict[str, str]) -> bool:
    """The retried condition: some job of the round answered IN_PROGRESS."""
    return bool(pending)


def wait_for_jobs(
    iam: Any, jobs: dict[str, str], poll: JobPoll
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Poll every job in rounds until none is IN_PROGRESS, then page through each report.

    Returns:
        (user name -> ServicesLastAccessed, user name -> why not read: the job FAILED, or is
        still IN_PROGRESS after ``poll.timeout`` seconds).
    """
    done: dict[str, list[dict[str, Any]]] = {}
    failed: dict[str, str] = {}
    pending = dict(jobs)

    def one_round() -> dict[str, str]:
        for name, job_id in list(pending.items()):
            first = iam.get_service_last_accessed_details(JobId=job_id, MaxItems=PAGE_SIZE)
            status = first.get("JobStatus")
            if status == IN_PROGRESS:
                continue
            del pending[name]
            if status == FAILED:
                error = first.get("Error") or {}
                failed[name] = (
                    f"service-last-accessed job FAILED: {error.get('Code', '?')}: "
                    f"{error.get('Message', 'no reason given')}"
                )
                continue
            # GetServiceLastAccessedDetails has no botocore paginator: IAM's Marker by hand.
            done[name] = list(first.get("ServicesLastAccessed", []))
            if first.get("IsTruncated") and first.get("Marker"):
                done[name] += marker_pages(
                    iam.get_service_last_accessed_details,
                    "ServicesLastAccessed",
                    start=first["Marker"],
                    JobId=job_id,
                    MaxItems=PAGE_SIZE,
                )
        return pending

    retrying = Retrying(
        retry=retry_if_result(_still_in_progress),
        wait=wait_exponential(multiplier=poll.initial, max=poll.maximum),
        stop=stop_after_delay(poll.timeout),
    )
    try:
        retrying(one_round)
    except RetryError:
        for name in pending:
            failed[name] = f"service-last-accessed job still IN_PROGRESS after {poll.timeout:.0f} s"
    return done, failed


def _later(found: dict[str, str], key: str, when: str) -> None:
    if key not in found or found[key] < when:
        found[key] = when


def usage_from_report(
    account_id: str, user: str, services: list[dict[str, Any]], since: datetime
) -> UserUsage:
    """A user's use in the window from its ServicesLastAccessed (never-used services absent)."""
    used: dict[str, str] = {}
    actions: dict[str, str] = {}
    action_level: set[str] = set()
    for service in services:
        namespace = service["ServiceNamespace"]
        if "TrackedActionsLastAccessed" in service:
            action_level.add(namespace)
        last = service.get("LastAuthenticated")
        if last is not None and as_utc(last) >= since:
            _later(used, namespace, iso_utc(last))
        for tracked in service.get("TrackedActionsLastAccessed") or []:
            when = tracked.get("LastAccessedTime")
            if when is not None and as_utc(when) >= since:
                _later(actions, f"{namespace}:{tracked['ActionName']}", iso_utc(when))
    return UserUsage(account_id, user, used, actions, frozenset(action_level))


def trail_clients(session: boto3.Session, regions: tuple[str, ...]) -> list[Any]:
    """A CloudTrail client per region to read: us-east-1 (IAM's events are there whatever
    region the caller used) and the in-scope regions."""
    return [
        session.client("cloudtrail", region_name=region)
        for region in dict.fromkeys((GLOBAL_EVENTS_REGION, *regions))
    ]


def cloudtrail_actions(
    trails: list[Any], user: str, since: datetime, until: datetime
) -> dict[str, str]:
    """What the user did in the window: "service:Action" -> last time, from its events.

    Args:
        trails: CloudTrail clients, one per region (:func:`trail_clients`).
        user: The IAM user name (LookupEvents by ``Username``).
        since: The window's start; CloudTrail keeps 90 days, so at most those are read.
        until: The window's end.
    """
    start = max(since, until - timedelta(days=90))
    found: dict[str, str] = {}
    for trail in trails:
        for event in lookup_events(trail, "Username", user, start, until):
            source = event.get("EventSource") or ""
            if not source or namespace_of(source) == "signin":
                continue  # console sign-ins are no service's use
            if _not_use(event):
                continue
            when = as_utc(event["EventTime"])
            if since <= when <= until:
                _later(found, iam_action(source, event.get("EventName") or ""), iso_utc(when))
    return found


def _not_use(event: dict[str, Any]) -> bool:
    try:
        record = json.loads(event.get("CloudTrailEvent") or "{}")
    except ValueError:
        return False
    code = str(record.get("errorCode") or "")
    return bool(code) and any(word in code for word in _NOT_USE)


def joined(report: UserUsage, trail_actions: dict[str, str]) -> UserUsage:
    """Access Advisor's usage with CloudTrail's actions added (the latest time wins)."""
    services = dict(report.services)
    actions = dict(report.actions)
    for action, when in trail_actions.items():
        _later(actions, action, when)
        _later(services, action.split(":", 1)[0], when)
    return UserUsage(report.account_id, report.user, services, actions, report.action_level)


def read_account_usage(
    session: boto3.Session,
    account_id: str,
    users: dict[str, str],
    *,
    window_days: int,
    now: datetime,
    regions: tuple[str, ...] = (),
    poll: JobPoll | None = None,
) -> AccountUsage:
    """Read every listed user's use in the last ``window_days`` days of one account.

    Args:
        session: The member account's session (``AwsSessions.for_account``).
        account_id: The account.
        users: user name -> IAM user ARN.
        window_days: The window, ending at ``now``.
        now: The end of the window.
        regions: In-scope regions whose CloudTrail is read besides us-east-1.
        poll: How the jobs are polled.

    Returns:
        Usage per user read; users not read (gone, job FAILED or not done) with why.

    Raises:
        ClientError: IAM or CloudTrail refused the account's calls (the account is not read).
    """
    since = now - timedelta(days=window_days)
    # Clients made here, on one thread: a boto3 session is not safe to share for that.
    iam = session.client("iam")
    trails = trail_clients(session, regions)
    result = AccountUsage()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # CloudTrail on its own thread: its rate is its own, so it runs while IAM's jobs do.
        trail_future = pool.submit(
            lambda: {u: cloudtrail_actions(trails, u, since, now) for u in users}
        )
        jobs, gone = start_jobs(iam, users)
        reports, failed = wait_for_jobs(iam, jobs, poll or JobPoll())
        trail = trail_future.result()
    result.unread = {**gone, **failed}
    for name in users:
        if name in reports:
            report = usage_from_report(account_id, name, reports[name], since)
            result.users.append(joined(report, trail.get(name, {})))
    log.info(
        "%s: usage of %d user(s) read, %d not", account_id, len(result.users), len(result.unread)
    )
    return result
