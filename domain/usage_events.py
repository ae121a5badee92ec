"""CloudTrail events as IAM actions: eventSource + eventName -> "service:Action"."""

# CloudTrail names an API call (eventName) and the endpoint it went to (eventSource); a policy
# names IAM actions in a service namespace. Mostly eventSource's first label is the namespace
# and eventName the action, with a few well-known exceptions kept here (Service Authorization
# Reference, "Actions, resources, and condition keys" of each service).

from __future__ import annotations

import re

# eventSource -> IAM service namespace, where the endpoint's name is not the namespace.
_NAMESPACE_OF_SOURCE = {
    "sso.amazonaws.com": "sso",
    "tagging.amazonaws.com": "tag",
    "monitoring.amazonaws.com": "cloudwatch",
    "email.amazonaws.com": "ses",
    "elasticloadbalancing.amazonaws.com": "elasticloadbalancing",
    "signin.amazonaws.com": "signin",
}
# (namespace, API operation) -> IAM action, where the permission is not named as the call.
_ACTION_OF_CALL = {
    ("s3", "ListBuckets"): "ListAllMyBuckets",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "ListObjectVersions"): "ListBucketVersions",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "GetBucketLifecycleConfiguration"): "GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycleConfiguration"): "PutLifecycleConfiguration",
    ("ec2", "DescribeInstancesV2"): "DescribeInstances",
}
# Lambda's CloudTrail event names carry the API version: "ListFunctions20150331",
# "GetFunction20150331v2" (Lambda developer guide, "Logging Lambda API calls using CloudTrail").
_VERSION_SUFFIX = re.compile(r"\d{8}(v\d+)?$")

# Services whose action-level last-accessed data IAM reports (IAM user guide, "IAM action last
# accessed information services and actions": S3, EC2, IAM and Lambda management actions).
ACTION_LEVEL_SERVICES = frozenset({"s3", "ec2", "iam", "lambda"})


def namespace_of(event_source: str) -> str:
    """The IAM service namespace of a CloudTrail eventSource ("s3.amazonaws.com" -> "s3")."""
    known = _NAMESPACE_OF_SOURCE.get(event_source)
    if known:
        return known
    return event_source.split(".", 1)[0]


def action_name(namespace: str, event_name: str) -> str:
    """The IAM action (without namespace) a call of ``event_name`` needs."""
    if namespace == "lambda":
        event_name = _VERSION_SUFFIX.sub("", event_name)
    return _ACTION_OF_CALL.get((namespace, event_name), event_name)


def iam_action(event_source: str, event_name: str) -> str:
    """The "service:Action" of one CloudTrail event (``s3.amazonaws.com``, ``ListBuckets`` ->
    ``s3:ListAllMyBuckets``)."""
    namespace = namespace_of(event_source)
    return f"{namespace}:{action_name(namespace, event_name)}"


# Calls that need no permission: an identity policy can't take them away, so verify never
# counts them as lost ("GetCallerIdentity": "No permissions are required to perform this
# operation", even under an explicit Deny; "GetSessionToken": "No permissions are required
# for users to perform this operation" — AWS STS API reference).
PERMISSION_FREE_ACTIONS = frozenset({"sts:getcalleridentity", "sts:getsessiontoken"})


def needs_permission(action: str) -> bool:
    """False for a call no policy governs (``PERMISSION_FREE_ACTIONS``, any case)."""
    return action.lower() not in PERMISSION_FREE_ACTIONS
