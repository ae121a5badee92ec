"""Workload IAM users and where their keys are used from: the runtime each most likely lives in.

The records the ``workloads`` step writes (``flows/workloads.py``: CloudTrail by access key id,
last-used data, the key scan's findings) and the ``replace`` stage plans from
(``stages/replace.py``): a :class:`Placement` per workload user says which runtime holds its
key, how sure we are and why, so the plan can give that runtime a role instead of the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Runtime(StrEnum):
    """Where a workload's key most likely lives; each has its own way onto a role."""

    LAMBDA = "lambda"  # a Lambda execution role
    ECS = "ecs"  # an ECS task role
    EC2 = "ec2"  # an EC2 instance profile
    CODEBUILD = "codebuild"  # a CodeBuild service role
    GITHUB_ACTIONS = "github-actions"  # a GitHub OIDC role pinned to the repository
    TERRAFORM = "terraform"  # a pipeline role (its CI's OIDC, or the runner's instance role)
    ON_PREMISES = "on-premises"  # an IAM Roles Anywhere profile (trust anchor first)
    VENDOR = "vendor"  # a cross-account role with an ExternalId
    UNKNOWN = "unknown"  # nobody can place it: the key stays, with its why


class Confidence(StrEnum):
    HIGH = "high"  # the runtime says so itself (exec-env user agent, OIDC helper) and agrees
    MEDIUM = "medium"  # one kind of evidence, or evidence that needs reading (a tool's agent)
    LOW = "low"  # a guess from weak signals (address ranges, plain SDKs)
    NONE = "none"  # no usable evidence


@dataclass(frozen=True)
class KeyUse:
    """One request signed by a workload's access key, as CloudTrail recorded it."""

    access_key_id: str
    event_time: datetime
    event_source: str  # e.g. s3.amazonaws.com
    event_name: str  # e.g. GetObject
    region: str
    source_ip: str | None = None
    user_agent: str | None = None
    error_code: str | None = None


@dataclass
class KeyUsage:
    """What one access key of a workload user did, summed up for people.

    Attributes:
        access_key_id: Whole in the state DB; masked (``AKIA…WXYZ``) wherever shown.
        status: Active | Inactive.
        last_used: GetAccessKeyLastUsed's date.
        events: CloudTrail events signed by the key (scanner traffic excluded).
        first_seen / last_seen: The oldest and newest of those events.
        user_agents / source_ips / calls: Distinct values, most frequent first
            (``calls``: ``service:Action``).
        ignored: Events left out of the inference, each with why (e.g. a secret scanner).
        written_down: Where the key scan found the key (``location`` of each finding).
    """

    access_key_id: str
    status: str
    last_used: datetime | None = None
    events: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    user_agents: list[str] = field(default_factory=list)
    source_ips: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    written_down: list[str] = field(default_factory=list)


@dataclass
class Placement:
    """Where one workload user's keys are used from, and the runtime that most likely holds it.

    Attributes:
        account_id / user: The IAM user.
        runtime: The inferred (or, ``settled_by == "spec"``, declared) runtime.
        confidence: How sure the inference is.
        evidence: One line per piece of evidence, for people (``exec-env/AWS_Lambda_python3.12
            on 14 of 14 calls``).
        keys: Per access key, what it did.
        repository: ``owner/name`` of the GitHub repository (GitHub Actions), from the scan
            finding's repository or the spec; the OIDC role's ``sub`` is pinned to it.
        vendor_account: The vendor's AWS account (VENDOR), from the spec.
        external_id: The ExternalId the vendor's role must pass (VENDOR), from the spec.
        owner: Who changes the workload (the user's ``owner`` tag, or the spec).
        trust_anchor_arn: The IAM Roles Anywhere trust anchor the on-premises workload's
            certificates chain to (ON_PREMISES), from the spec; without it no role is planned.
        non_interactive: Every use came from a non-interactive client: evidence that it is a
            service user (CIS 1.21).
        settled_by: ``inferred`` or ``spec`` (a ``[[workloads]]`` entry decided it).
        role_first_used: When the replacement role was first used (after ``replace``).
    """

    account_id: str
    user: str
    runtime: Runtime
    confidence: Confidence
    evidence: list[str] = field(default_factory=list)
    keys: list[KeyUsage] = field(default_factory=list)
    repository: str | None = None
    vendor_account: str | None = None
    external_id: str | None = None
    owner: str | None = None
    non_interactive: bool = False
    settled_by: str = "inferred"
    role_first_used: datetime | None = None
    trust_anchor_arn: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.account_id, self.user)

    @property
    def last_used(self) -> datetime | None:
        """The newest use of any of its keys (CloudTrail or last-used data)."""
        dates = [d for k in self.keys for d in (k.last_seen, k.last_used) if d is not None]
        return max(dates, default=None)

    @property
    def placeable(self) -> bool:
        """Whether the plan can give its runtime a role (``replace-with-role``)."""
        return self.runtime != Runtime.UNKNOWN


# The replace stage's action kinds other floors read: the disable gate and the owners' hand-off
# find a user's role through them, the Terraform export exports what they made.
CREATE_WORKLOAD_ROLE = "create-workload-role"
CREATE_INSTANCE_PROFILE = "create-instance-profile"

# The role the replace stage creates for a workload user lives under this path, so people (and
# iamc's own teardown) tell it apart from the account's other roles.
ROLE_PATH = "/iamc/"
_ROLE_PREFIX = "iamc-wl-"
_ROLE_NAME_MAX = 64  # IAM quotas: a role name is at most 64 characters


def replacement_role_name(user: str) -> str:
    """The name of the role that replaces workload user ``user``'s keys (one per user).

    ``iamc-wl-<user>``; a name over IAM's 64 characters keeps its start and gets a short hash of
    the whole user name, so two long names never share a role.
    """
    name = _ROLE_PREFIX + user
    if len(name) <= _ROLE_NAME_MAX:
        return name
    digest = hashlib.sha256(user.encode()).hexdigest()[:8]
    return name[: _ROLE_NAME_MAX - 9] + "-" + digest


def replacement_role_arn(account_id: str, user: str) -> str:
    return f"arn:aws:iam::{account_id}:role{ROLE_PATH}{replacement_role_name(user)}"
