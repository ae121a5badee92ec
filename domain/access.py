"""Synthesized access as plain records: permission-set definitions, assignments, prerequisites."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from domain.policy_documents import canonical_json
from domain.records import Finding, Group, InlinePolicy, User


@dataclass
class PermissionSetDefinition:
    """One permission set to create: the shared form of identical IAM access."""

    name: str
    description: str
    fingerprint: str
    session_duration: str = "PT8H"
    inline_policy: dict[str, Any] | None = None
    aws_managed_policy_arns: list[str] = field(default_factory=list)
    customer_managed_policies: list[dict[str, str]] = field(default_factory=list)  # name, path
    # {"managed_policy_arn": arn} or {"customer_managed_policy_reference": {name, path}}
    permissions_boundary: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)
    # Per customer-managed policy of the access: referenced or inlined, and why
    # (``domain.customer_policy_choice``): {"policy", "choice", "why", "document_hash"}.
    customer_managed_choice: list[dict[str, Any]] = field(default_factory=list)

    @property
    def inline_policy_json(self) -> str | None:
        """The inline policy exactly as it must be sent: the text the quotas were checked on."""
        return None if self.inline_policy is None else canonical_json(self.inline_policy)


@dataclass(frozen=True)
class KnownPermissionSet:
    """A permission set the organization already has for an access (from an earlier wave)."""

    name: str
    inline_policy: dict[str, Any] | None = None
    # Kept as they are for a set this migration did not create (it only ever adopts those).
    description: str | None = None
    session_duration: str | None = None


@dataclass(frozen=True)
class AssignmentDefinition:
    """One account assignment: a permission set given to an identity-store user or group."""

    account_id: str
    permission_set_name: str
    principal_type: str  # USER | GROUP
    principal_id: str
    principal_name: str
    reason: str  # e.g. "user jane.doe", "group developers"


def boundary_policy_arn(boundary: dict[str, Any], account_id: str, partition: str = "aws") -> str:
    """The IAM policy ARN a permission set's boundary (``permissions_boundary``) is in one
    account: the AWS-managed ARN, or the customer-managed policy of that name and path there
    (Identity Center resolves the reference per account: userguide, permissions boundaries)."""
    if "managed_policy_arn" in boundary:
        return str(boundary["managed_policy_arn"])
    ref = boundary["customer_managed_policy_reference"]
    return f"arn:{partition}:iam::{account_id}:policy{ref.get('path') or '/'}{ref['name']}"


def boundary_label(boundary: dict[str, Any] | None) -> str:
    """A boundary as a person reads it: the AWS-managed ARN, or the customer policy's path+name."""
    if not boundary:
        return ""
    if "managed_policy_arn" in boundary:
        return str(boundary["managed_policy_arn"])
    ref = boundary["customer_managed_policy_reference"]
    return f"{ref.get('path') or '/'}{ref['name']} (customer-managed, in each account)"


def boundary_as_api(boundary: dict[str, Any]) -> dict[str, Any]:
    """A boundary as Identity Center's API and CloudFormation's ``AWS::SSO::PermissionSet``
    take it: ``ManagedPolicyArn``, or ``CustomerManagedPolicyReference`` (Name, Path)."""
    if "managed_policy_arn" in boundary:
        return {"ManagedPolicyArn": boundary["managed_policy_arn"]}
    ref = boundary["customer_managed_policy_reference"]
    return {"CustomerManagedPolicyReference": {"Name": ref["name"], "Path": ref.get("path", "/")}}


def same_boundary(arn: str, boundary: dict[str, Any], account_id: str) -> bool:
    """Whether the policy ``arn`` (an IAM user's or role's boundary in ``account_id``) is the
    policy ``boundary`` names there."""
    partition = arn.split(":")[1] if arn.count(":") >= 5 else "aws"
    return arn == boundary_policy_arn(boundary, account_id, partition)


class RequiredPolicy(NamedTuple):
    """A customer-managed policy that must exist, by name and path, in an account."""

    account_id: str
    name: str
    path: str


@dataclass
class SynthesisResult:
    """Permission sets, assignments, prerequisites and findings, each sorted deterministically."""

    permission_sets: list[PermissionSetDefinition] = field(default_factory=list)
    assignments: list[AssignmentDefinition] = field(default_factory=list)
    required_customer_policies: list[RequiredPolicy] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # The plan's least privilege section (domain.least_privilege_report): None without usage.
    least_privilege: dict[str, Any] | None = None

    @property
    def blocking(self) -> list[Finding]:
        """The findings that must stop the plan."""
        return [f for f in self.findings if f.severity == "blocking"]


@dataclass
class EffectiveAccess:
    """What a user can do: its own policies, those inherited from its groups, and its boundary."""

    managed_policy_arns: list[str]
    inline_policies: list[tuple[str, InlinePolicy]]  # (source: "user" or "group:NAME", policy)
    boundary_arn: str | None


def effective_access(user: User, groups: list[Group]) -> EffectiveAccess:
    """Gather a user's managed and inline policies, including those inherited from groups."""
    by_name = {g.name: g for g in groups}
    arns = {p.arn for p in user.attached_policies}
    inline: list[tuple[str, InlinePolicy]] = [("user", p) for p in user.inline_policies]
    for name in user.groups:
        group = by_name.get(name)
        if group is None:
            continue
        arns |= {p.arn for p in group.attached_policies}
        inline.extend((f"group:{name}", p) for p in group.inline_policies)
    return EffectiveAccess(
        managed_policy_arns=sorted(arns),
        inline_policies=inline,
        boundary_arn=user.permissions_boundary_arn,
    )
