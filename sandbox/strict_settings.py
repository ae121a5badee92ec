"""How strict the sandbox is: the settings readable and settable over ``/_iamc/config``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sandbox.regions import DEFAULT_ENABLED_REGIONS, enabled_regions

# Requests per second when throttling is switched "on" without rates: IAM Identity Center
# quotas give sso-admin and identitystore ~20 requests/s each
# (https://docs.aws.amazon.com/singlesignon/latest/userguide/limits.html).
# CloudTrail's LookupEvents allows 2 requests/s per account per region (CloudTrail API
# reference, LookupEvents).
DEFAULT_THROTTLE: dict[str, float] = {"sso-admin": 20.0, "identitystore": 20.0, "cloudtrail": 2.0}

API_FAMILIES = ("iam", "sts", "organizations", "sso-admin", "identitystore", "cloudtrail")


@dataclass
class AssignmentFault:
    """Make the next assignment creation (or deletion) for (account, permission set) end
    FAILED.

    Either field may be "*" to match any account or permission set.
    """

    account_id: str
    permission_set_arn: str
    reason: str = "Injected failure"
    operation: str = "create"  # or "delete": DeleteAccountAssignment ends FAILED


@dataclass
class Strictness:
    """How strict the sandbox is; readable and settable at runtime over ``/_iamc/config``.

    Attributes:
        delete_conflicts: DeleteUser refuses while the user has dependent objects.
        assume_role_checks: AssumeRole of a role that does not exist is refused with
            AccessDenied, as AWS does (moto hands out credentials for any ARN); a
            successful AssumeRole* moves the role's RoleLastUsed and is recorded in the role's
            account's CloudTrail.
        trust_policy_checks: With ``assume_role_checks``, AssumeRole and
            AssumeRoleWithWebIdentity are allowed only when the role's trust policy allows the
            caller (principal, conditions such as ``sts:ExternalId`` or the OIDC token's
            ``aud``/``sub``), as STS evaluates it (``sandbox/trust.py``). An AssumeRole that
            carries ``SerialNumber`` and ``TokenCode`` of the calling user's MFA device (any
            six digits) has ``aws:MultiFactorAuthPresent`` = ``true`` in that evaluation;
            without them the key is absent, as in AWS.
        identity_policy_checks: With ``assume_role_checks``, a cross-account AssumeRole by an
            IAM user or a role session is allowed only when the caller's own identity
            policies (a user's and its groups', a role's) allow ``sts:AssumeRole`` on the
            role as well (IAM user guide, "Cross-account policy evaluation logic"). An account
            root (such as the sandbox's ``testing`` key) needs no identity policy.
        forwarded_for: A request from the loopback address may name its source address in
            ``X-Forwarded-For`` (and a playback its event time in ``X-Iamc-Event-Time``), which
            CloudTrail then records; the sandbox's usage playback relies on it. Sandbox only:
            AWS takes the address from the connection.
        async_in_progress_polls: Describe* polls that report IN_PROGRESS before the final status
            (when ``async_completion_ms`` is 0).
        async_completion_ms: When above 0, an asynchronous request (assignment creation or
            deletion, provisioning) completes this many milliseconds after it was made,
            however often it is polled, as AWS's do: a Describe or List*Status before then
            reports IN_PROGRESS, any after it the final status.
        conflicts: Duplicate permission-set names and duplicate assignments are refused.
        credential_checks: A request signed by an ``Inactive`` access key is refused
            (``InvalidClientTokenId``) and one signed by a user holding the quarantine policy
            is denied (``AccessDenied``), as AWS would; either way CloudTrail records it.
        throttle: Requests per second per API family (``iam``, ``sts``, ``organizations``,
            ``sso-admin``, ``identitystore``, ``cloudtrail``); a family not listed is not
            throttled. ``cloudtrail`` is per account and region, as AWS's quota is.
        latency_ms: Fixed delay added to every AWS call.
        faults: Pending injected assignment failures, consumed one per matching creation.
        deny: Calls (``service:Operation``, e.g. ``kms:GetKeyPolicy``) refused with
            AccessDenied, as a resource policy or SCP would refuse them in AWS; only calls the
            layer can name (JSON services and IAM/STS, not REST ones such as S3 or Lambda).
        roles_quota: The IAM roles quota every account reports (GetAccountSummary
            ``RolesQuota``; AWS's default 1,000); CreateRole beyond it is refused with
            ``LimitExceeded``, as IAM does. Lower it to exercise the plan's role-quota check.
        enabled_regions: The regions ``DescribeRegions`` reports enabled (default: every
            region enabled by default in the aws partition, or ``IAMC_SANDBOX_ENABLED_REGIONS``).
        delegated_admin_checks: sso-admin refuses CreateAccountAssignment and
            ProvisionPermissionSet into the organization's management account when the caller
            is another account (a delegated administrator), with AccessDeniedException, as
            AWS does (IAM Identity Center user guide, "Delegated administration").
    """

    delete_conflicts: bool = True
    assume_role_checks: bool = True
    trust_policy_checks: bool = True
    identity_policy_checks: bool = True
    forwarded_for: bool = True
    async_in_progress_polls: int = 2
    async_completion_ms: int = 0
    conflicts: bool = True
    credential_checks: bool = True
    throttle: dict[str, float] = field(default_factory=dict)
    latency_ms: int = 0
    faults: list[AssignmentFault] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    roles_quota: int = 1000
    delegated_admin_checks: bool = True
    enabled_regions: list[str] = field(default_factory=enabled_regions)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update from JSON; ``throttle: true`` means the default rates.

        Raises:
            ValueError: An unknown setting or API family, or a value of the wrong type.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        for name, value in changes.items():
            if name == "throttle":
                setattr(self, name, _parse_throttle(value))
            elif name == "faults":
                self.faults = [AssignmentFault(**fault) for fault in value or []]
            elif name == "deny":
                self.deny = _parse_deny(value)
            elif name == "enabled_regions":
                self.enabled_regions = _parse_regions(value)
            elif name in (
                "delete_conflicts",
                "conflicts",
                "assume_role_checks",
                "trust_policy_checks",
                "identity_policy_checks",
                "forwarded_for",
                "credential_checks",
                "delegated_admin_checks",
            ):
                setattr(self, name, bool(value))
            else:
                number = int(value)
                if number < 0:
                    raise ValueError(f"{name} must be >= 0")
                setattr(self, name, number)


def _parse_regions(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("enabled_regions must be a non-empty list of region names")
    unknown = sorted(set(value) - set(DEFAULT_ENABLED_REGIONS))
    if unknown:
        raise ValueError(f"enabled_regions: {', '.join(unknown)} are not enabled by default")
    return [str(v) for v in value]


def _parse_deny(value: Any) -> list[str]:
    if not value:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", v) for v in value
    ):
        raise ValueError("deny must be a list of 'service:Operation' (e.g. 'kms:GetKeyPolicy')")
    return list(value)


def _parse_throttle(value: Any) -> dict[str, float]:
    if value is True:
        return dict(DEFAULT_THROTTLE)
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError("throttle must be true, false or {family: requests_per_second}")
    unknown = sorted(set(value) - set(API_FAMILIES))
    if unknown:
        raise ValueError(f"unknown API family {', '.join(unknown)}; expected {API_FAMILIES}")
    return {family: float(rate) for family, rate in value.items() if float(rate) > 0}
