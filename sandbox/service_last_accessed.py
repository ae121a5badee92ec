"""IAM's service-last-accessed jobs (moto 5.2.5 lacks them), answered from the sandbox's Trail.

``GenerateServiceLastAccessedDetails`` starts a job for an IAM user; the first
``GetServiceLastAccessedDetails`` of it answers ``IN_PROGRESS`` (as AWS does while it builds the
report), later ones ``COMPLETED`` with one entry per service the user's policies grant or the
user used: ``LastAuthenticated`` and its region and entity only when the user's keys made a call
of that service the sandbox served (every call signed by an IAM user's key is a Trail event).
AWS counts every authenticated attempt, denied ones too, and never unauthenticated ones
(IAM API reference, GenerateServiceLastAccessedDetails): a call with an inactive key is not
use. ``Granularity=ACTION_LEVEL`` adds ``TrackedActionsLastAccessed`` for the services AWS
tracks action by action (S3, EC2, IAM, Lambda). Sandbox limits: only IAM users (not groups,
roles or policies) are answered; a tracked service lists the actions used, not also its
tracked actions never used; a policy granting ``*`` (or ``NotAction``) lists the services
named in :data:`SERVICE_NAMES` rather than all of AWS's.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain.least_privilege import NOTHING, document_grants
from domain.usage_events import ACTION_LEVEL_SERVICES, action_name, namespace_of
from sandbox.cloudtrail import Clock, Trail, TrailEvent
from sandbox.identity_policy import default_document
from sandbox.trust import load_document
from sandbox.wire import (
    Call,
    Reply,
    decode_marker,
    encode_marker,
    iam_backend,
    query_reply,
    xml_error,
)

# IAM reports at least the last 400 days (IAM user guide, "Tracking period").
TRACKING_PERIOD = timedelta(days=400)
# GetServiceLastAccessedDetails pages with MaxItems 1..1000, 100 by default (IAM API reference).
DEFAULT_MAX_ITEMS = 100
MAX_MAX_ITEMS = 1000
# Calls that never authenticated: AWS does not report them.
_UNAUTHENTICATED = frozenset({"InvalidClientTokenId", "UnrecognizedClientException"})

# The ServiceName AWS reports for each namespace (IAM console's Access Advisor names).
SERVICE_NAMES = {
    "cloudformation": "AWS CloudFormation",
    "cloudtrail": "AWS CloudTrail",
    "dynamodb": "Amazon DynamoDB",
    "ec2": "Amazon EC2",
    "ecr": "Amazon Elastic Container Registry",
    "iam": "AWS Identity and Access Management",
    "identitystore": "AWS Identity Store",
    "kinesis": "Amazon Kinesis",
    "kms": "AWS Key Management Service",
    "lambda": "AWS Lambda",
    "logs": "Amazon CloudWatch Logs",
    "organizations": "AWS Organizations",
    "s3": "Amazon S3",
    "secretsmanager": "AWS Secrets Manager",
    "sns": "Amazon SNS",
    "sqs": "Amazon SQS",
    "ssm": "AWS Systems Manager",
    "sso": "AWS IAM Identity Center (successor to AWS Single Sign-On)",
    "sts": "AWS Security Token Service",
    "tag": "Amazon Resource Group Tagging API",
}


@dataclass
class _Use:
    when: datetime
    region: str


@dataclass
class _Job:
    job_id: str
    account_id: str
    arn: str
    granularity: str
    created: datetime
    services: list[dict[str, Any]] = field(default_factory=list)
    polled: int = 0
    completed: datetime | None = None


class ServiceLastAccessed:
    """The jobs and their answers; one per sandbox (jobs are forgotten on reset)."""

    def __init__(self, trail: Trail, clock: Clock) -> None:
        self.trail = trail
        self.clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}

    def reset(self) -> None:
        with self._lock:
            self._jobs.clear()

    def handlers(self) -> dict[str, Any]:
        return {
            "iam:GenerateServiceLastAccessedDetails": self.generate,
            "iam:GetServiceLastAccessedDetails": self.get,
        }

    def generate(self, call: Call) -> Reply:
        form = call.form()
        arn = form.get("Arn", "")
        granularity = form.get("Granularity", "SERVICE_LEVEL")
        if granularity not in ("SERVICE_LEVEL", "ACTION_LEVEL"):
            return xml_error("iam", "InvalidInput", f"Invalid Granularity {granularity!r}.", 400)
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "iam":
            return xml_error("iam", "InvalidInput", f"ARN {arn} is not valid.", 400)
        if parts[4] != call.account_id:
            return xml_error("iam", "InvalidInput", f"ARN {arn} is not in this account.", 400)
        if not parts[5].startswith("user/"):
            return xml_error(
                "iam",
                "NotImplemented",
                "the sandbox answers service-last-accessed jobs for IAM users only",
                501,
            )
        backend = iam_backend(call.account_id, call.region)
        user = next((u for u in list(backend.users.values()) if u.arn == arn), None)
        if user is None:
            name = parts[5].rsplit("/", 1)[-1]
            return xml_error(
                "iam", "NoSuchEntity", f"The user with name {name} cannot be found.", 404
            )
        now = self.clock.now()
        job = _Job(str(uuid.uuid4()), call.account_id, arn, granularity, now)
        job.services = _services(
            backend,
            user,
            self.trail.events_of(call.account_id),
            since=now - TRACKING_PERIOD,
            action_level=granularity == "ACTION_LEVEL",
        )
        with self._lock:
            self._jobs[job.job_id] = job
        return query_reply("GenerateServiceLastAccessedDetails", {"JobId": job.job_id})

    def get(self, call: Call) -> Reply:
        form = call.form()
        with self._lock:
            job = self._jobs.get(form.get("JobId", ""))
            if job is None or job.account_id != call.account_id:
                return xml_error(
                    "iam", "NoSuchEntity", f"No job found for JobId {form.get('JobId')}.", 404
                )
            job.polled += 1
            if job.polled == 1:
                # AWS builds the report asynchronously: the first poll finds it in progress.
                return query_reply(
                    "GetServiceLastAccessedDetails",
                    {
                        "JobStatus": "IN_PROGRESS",
                        "JobType": job.granularity,
                        "JobCreationDate": job.created,
                        "ServicesLastAccessed": [],
                    },
                )
            job.completed = job.completed or self.clock.now()
        try:
            max_items = int(form.get("MaxItems", DEFAULT_MAX_ITEMS))
        except ValueError:
            max_items = 0
        if not 1 <= max_items <= MAX_MAX_ITEMS:
            return xml_error(
                "iam",
                "ValidationError",
                f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to "
                f"satisfy constraint: Member must have value between 1 and {MAX_MAX_ITEMS}",
                400,
            )
        start = _decode_marker(form["Marker"]) if form.get("Marker") else 0
        if start is None:
            return xml_error("iam", "InvalidInput", "Invalid Marker.", 400)
        page = job.services[start : start + max_items]
        result: dict[str, Any] = {
            "JobStatus": "COMPLETED",
            "JobType": job.granularity,
            "JobCreationDate": job.created,
            "JobCompletionDate": job.completed,
            "ServicesLastAccessed": page,
            "IsTruncated": start + max_items < len(job.services),
        }
        if result["IsTruncated"]:
            result["Marker"] = _encode_marker(start + max_items)
        return query_reply("GetServiceLastAccessedDetails", result)


def _services(
    backend: Any, user: Any, events: list[TrailEvent], *, since: datetime, action_level: bool
) -> list[dict[str, Any]]:
    """One entry per service granted or used, sorted by namespace."""
    used: dict[str, _Use] = {}
    actions: dict[str, dict[str, _Use]] = {}
    for event in events:
        identity = event.record.get("userIdentity") or {}
        if identity.get("type") != "IAMUser" or identity.get("principalId") != user.id:
            continue
        if event.record.get("errorCode") in _UNAUTHENTICATED or event.event_time < since:
            continue
        namespace = namespace_of(event.event_source)
        if namespace == "signin":
            continue
        use = _Use(event.event_time, event.region)
        if namespace not in used or used[namespace].when < use.when:
            used[namespace] = use
        name = action_name(namespace, event.event_name)
        known = actions.setdefault(namespace, {})
        if name not in known or known[name].when < use.when:
            known[name] = use
    out = []
    for namespace in sorted(granted_services(backend, user) | set(used)):
        entry: dict[str, Any] = {
            "ServiceName": SERVICE_NAMES.get(namespace, namespace),
            "ServiceNamespace": namespace,
            "TotalAuthenticatedEntities": 0,
        }
        use = used.get(namespace)
        if use is not None:
            entry.update(
                LastAuthenticated=use.when,
                LastAuthenticatedEntity=user.arn,
                LastAuthenticatedRegion=use.region,
                TotalAuthenticatedEntities=1,
            )
        if action_level and namespace in ACTION_LEVEL_SERVICES:
            entry["TrackedActionsLastAccessed"] = [
                {
                    "ActionName": name,
                    "LastAccessedEntity": user.arn,
                    "LastAccessedTime": action_use.when,
                    "LastAccessedRegion": action_use.region,
                }
                for name, action_use in sorted(actions.get(namespace, {}).items())
            ]
        out.append(entry)
    return out


def granted_services(backend: Any, user: Any) -> set[str]:
    """The namespaces the user's Allow statements name: its own inline and managed policies
    and its groups'. ``*`` and ``NotAction`` grant every service (here: :data:`SERVICE_NAMES`)."""
    documents = [load_document(text) for text in list(user.policies.values())]
    documents += [default_document(p) for p in list(user.managed_policies.values())]
    for group in list(backend.groups.values()):
        if user in group.users:
            documents += [load_document(text) for text in list(group.policies.values())]
            documents += [default_document(p) for p in list(group.managed_policies.values())]
    granted = NOTHING
    for document in documents:
        granted = granted | document_grants(document)
    return set(granted.services) | (set(SERVICE_NAMES) if granted.everything else set())


def _encode_marker(offset: int) -> str:
    return encode_marker("sla", offset)


def _decode_marker(marker: str) -> int | None:
    return decode_marker("sla", marker)
