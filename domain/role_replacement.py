"""The role that replaces a workload IAM user's access keys: its trust, its permissions (pure).

For a :class:`domain.workloads.Placement` and the user as the inventory saw it, the role its
runtime should assume instead of the key: a trust policy per runtime (a Lambda execution role,
an ECS task role, an EC2 instance profile, a CodeBuild service role, a GitHub OIDC role pinned
to one repository, an IAM Roles Anywhere role, a vendor's cross-account role with an
ExternalId) and the user's effective permissions copied (its inline and attached policies, its
groups' inline and attached policies, its permissions boundary). What can't be planned without
more facts is a finding that says which (``[[workloads]]`` in the spec supplies them); a trust
policy is never planned with a placeholder in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.access import boundary_label, boundary_policy_arn, same_boundary
from domain.plan import USER_SCOPE
from domain.records import Finding, Group, User
from domain.trust_policy import GITHUB_AUDIENCE, GITHUB_OIDC_HOST
from domain.workloads import ROLE_PATH, Confidence, Placement, Runtime, replacement_role_name

REPLACE_STAGE = "replace"
# IAM quotas: managed policies attached to a role (default, adjustable to 20); inline
# policies' total size per role (characters, whitespace excluded).
MANAGED_POLICIES_PER_ROLE = 10
INLINE_POLICY_CHARS_PER_ROLE = 10_240
_POLICY_NAME_MAX = 128
# The confidence a placement needs before the plan moves its workload onto a role.
PLACEABLE_CONFIDENCE = (Confidence.HIGH, Confidence.MEDIUM)
_SERVICE_PRINCIPALS = {
    Runtime.LAMBDA: "lambda.amazonaws.com",
    Runtime.ECS: "ecs-tasks.amazonaws.com",
    Runtime.EC2: "ec2.amazonaws.com",
    Runtime.CODEBUILD: "codebuild.amazonaws.com",
}
# Service principals whose trust also pins the calling account (confused deputy protection:
# IAM user guide, "Cross-service confused deputy prevention").
_SOURCE_ACCOUNT_PINNED = (Runtime.ECS, Runtime.CODEBUILD)
_VERSION = "2012-10-17"


@dataclass
class RoleReplacement:
    """What the replace stage creates for one workload user.

    Attributes:
        inline_policies: Policy name -> document (``PutRolePolicy``), the user's and its
            groups' inline policies.
        managed_policy_arns: ``AttachRolePolicy``, the user's and its groups' attached ones.
        instance_profile_name: EC2 only: the instance profile holding the role.
        oidc_provider_arn: GitHub OIDC roles: the account's provider the trust names.
    """

    account_id: str
    user: str
    runtime: Runtime
    confidence: Confidence
    role_name: str
    trust_policy: dict[str, Any]
    description: str
    role_path: str = ROLE_PATH
    inline_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    managed_policy_arns: list[str] = field(default_factory=list)
    permissions_boundary_arn: str | None = None
    instance_profile_name: str | None = None
    oidc_provider_arn: str | None = None
    repository: str | None = None
    vendor_account: str | None = None
    external_id: str | None = None
    trust_anchor_arn: str | None = None


def github_oidc_provider_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:oidc-provider/{GITHUB_OIDC_HOST}"


def _statement(principal: dict[str, Any], action: Any, condition: dict[str, Any] | None = None):
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": action}
    if condition:
        statement["Condition"] = condition
    return {"Version": _VERSION, "Statement": [statement]}


def github_trust(account_id: str, repository: str) -> dict[str, Any]:
    """GitHub Actions of one repository's main branch, through the account's OIDC provider."""
    sub = f"repo:{repository}:ref:refs/heads/main"
    # A repository given as a pattern is kept a pattern (StringLike): the trust check then
    # refuses it, instead of a StringEquals that silently matches nothing.
    sub_operator = "StringLike" if any(c in repository for c in "*?") else "StringEquals"
    condition: dict[str, Any] = {
        "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": GITHUB_AUDIENCE},
    }
    condition.setdefault(sub_operator, {})[f"{GITHUB_OIDC_HOST}:sub"] = sub
    return _statement(
        {"Federated": github_oidc_provider_arn(account_id)},
        "sts:AssumeRoleWithWebIdentity",
        condition,
    )


def _missing(placement: Placement, kind: str, message: str) -> Finding:
    # A warning, not blocking: no role is planned for this user (nothing loose can be
    # created), and the other workloads' roles need not wait for one owner's answer.
    return Finding(
        severity="warning",
        kind=kind,
        message=message,
        account_id=placement.account_id,
        subject=f"user {placement.user}",
        details={"stages": [REPLACE_STAGE], "runtime": str(placement.runtime)},
    )


def _trust(placement: Placement) -> tuple[dict[str, Any] | None, Finding | None]:
    """The runtime's trust policy, or the finding that says what is missing to write it."""
    account, runtime, who = placement.account_id, placement.runtime, placement.user
    if runtime in _SERVICE_PRINCIPALS:
        pinned = runtime in _SOURCE_ACCOUNT_PINNED
        condition = {"StringEquals": {"aws:SourceAccount": account}} if pinned else None
        return _statement(
            {"Service": _SERVICE_PRINCIPALS[runtime]}, "sts:AssumeRole", condition
        ), None
    if runtime in (Runtime.GITHUB_ACTIONS, Runtime.TERRAFORM):
        if placement.repository:
            return github_trust(account, placement.repository), None
        return None, _missing(
            placement,
            "replace-needs-repository",
            f"{who}'s {runtime} workload needs the repository (owner/name) its GitHub OIDC role "
            "is pinned to; declare it in [[workloads]] (repository = ...), or its runtime",
        )
    if runtime == Runtime.ON_PREMISES:
        if placement.trust_anchor_arn:
            return _statement(
                {"Service": "rolesanywhere.amazonaws.com"},
                ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                {"ArnEquals": {"aws:SourceArn": placement.trust_anchor_arn}},
            ), None
        return None, _missing(
            placement,
            "replace-needs-trust-anchor",
            f"prerequisite: create an IAM Roles Anywhere trust anchor and profile for "
            f"{who}'s on-premises workload, then declare trust_anchor_arn in [[workloads]]; "
            "until then no role is planned and the key stays",
        )
    if runtime == Runtime.VENDOR:
        if placement.vendor_account and placement.external_id:
            return _statement(
                {"AWS": f"arn:aws:iam::{placement.vendor_account}:root"},
                "sts:AssumeRole",
                {"StringEquals": {"sts:ExternalId": placement.external_id}},
            ), None
        return None, _missing(
            placement,
            "replace-needs-vendor",
            f"{who}'s vendor workload needs the vendor's AWS account and the ExternalId its "
            "role must pass; declare vendor_account and external_id in [[workloads]]",
        )
    return None, None


def _policy_name(*parts: str) -> str:
    return "-".join(parts)[:_POLICY_NAME_MAX]


def _permissions(
    replacement: RoleReplacement, user: User, groups: Mapping[str, Group]
) -> list[str]:
    """Copy the user's effective permissions onto the role; what could not be copied."""
    gaps = []
    for policy in user.inline_policies:
        replacement.inline_policies[policy.name] = policy.document
    arns = [p.arn for p in user.attached_policies]
    for name in sorted(user.groups):
        group = groups.get(name)
        if group is None:
            gaps.append(f"group {name} is not in the inventory: its policies are not copied")
            continue
        for policy in group.inline_policies:
            replacement.inline_policies[_policy_name("group", name, policy.name)] = policy.document
        arns.extend(p.arn for p in group.attached_policies)
    replacement.managed_policy_arns = sorted(set(arns))
    replacement.permissions_boundary_arn = user.permissions_boundary_arn
    if len(replacement.managed_policy_arns) > MANAGED_POLICIES_PER_ROLE:
        gaps.append(
            f"{len(replacement.managed_policy_arns)} managed policies: over IAM's default "
            f"quota of {MANAGED_POLICIES_PER_ROLE} per role (raise it, or merge policies)"
        )
    size = sum(len("".join(str(d).split())) for d in replacement.inline_policies.values())
    if size > INLINE_POLICY_CHARS_PER_ROLE:
        gaps.append(
            f"inline policies of about {size} characters: over IAM's "
            f"{INLINE_POLICY_CHARS_PER_ROLE} per role"
        )
    return gaps


def _boundary_conflict(placement: Placement, user: User, boundary: dict[str, Any]) -> Finding:
    # As for permission sets (domain.synthesis): a role holds one boundary, and which of two
    # is stricter can't be known, so no role is planned for this user.
    return Finding(
        severity="blocking",
        kind="boundary-conflict",
        message=f"IAM user {user.name} in {placement.account_id} has permissions boundary "
        f"{user.permissions_boundary_arn}, but [permission_sets] boundary (every role iamc "
        f"creates) is {boundary_label(boundary)}: no role is planned for it and it keeps its "
        "key; make the spec's boundary the user's (or remove the user's), then plan again",
        account_id=placement.account_id,
        subject=f"user {user.name}",
        details={
            "scope": USER_SCOPE,
            "stages": [REPLACE_STAGE],
            "user_boundary": user.permissions_boundary_arn,
            "spec_boundary": boundary,
        },
    )


def plan_replacement(
    placement: Placement,
    user: User,
    groups: Mapping[str, Group],
    boundary: dict[str, Any] | None = None,
) -> tuple[RoleReplacement | None, list[Finding]]:
    """The role that replaces ``user``'s keys where ``placement`` says they are used.

    Args:
        placement: Where the user's key is used from (runtime, repository, vendor...).
        user: The user as the inventory saw it (its policies, groups and boundary).
        groups: The account's groups by name (their policies are the user's too).
        boundary: The spec's permissions boundary (``PermissionSets.boundary_reference()``):
            the role's, resolved in the user's account; None: the user's own, if any.

    Returns:
        The role (None when it can't be planned), and findings: what is missing to plan it
        (warnings: a repository, a vendor account or a trust anchor),
        and what of its permissions could not be copied as they are.
    """
    own = user.permissions_boundary_arn
    if boundary and own and not same_boundary(own, boundary, placement.account_id):
        return None, [_boundary_conflict(placement, user, boundary)]
    trust, missing = _trust(placement)
    if trust is None:
        return None, [missing] if missing else []
    role_name = replacement_role_name(user.name)
    replacement = RoleReplacement(
        account_id=placement.account_id,
        user=user.name,
        runtime=placement.runtime,
        confidence=placement.confidence,
        role_name=role_name,
        trust_policy=trust,
        description=f"iamc: replaces the access keys of IAM user {user.name} ({placement.runtime})"[
            :1000
        ],
        instance_profile_name=role_name if placement.runtime == Runtime.EC2 else None,
        oidc_provider_arn=github_oidc_provider_arn(placement.account_id)
        if "Federated" in trust["Statement"][0]["Principal"]
        else None,
        repository=placement.repository,
        vendor_account=placement.vendor_account,
        external_id=placement.external_id,
        trust_anchor_arn=placement.trust_anchor_arn,
    )
    findings = [
        Finding(
            severity="warning",
            kind="replace-permissions",
            message=f"role {role_name} for {user.name}: {gap}",
            account_id=placement.account_id,
            subject=f"user {user.name}",
            details={"stages": [REPLACE_STAGE]},
        )
        for gap in _permissions(replacement, user, groups)
    ]
    if boundary:
        replacement.permissions_boundary_arn = boundary_policy_arn(boundary, placement.account_id)
    return replacement, findings
