"""Plain records of what the inventory found: the data passed between tasks, store and reports.

They hold no secret by construction: no secret access key, no password, no MFA seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class UserClass(StrEnum):
    PROTECTED = "protected"  # spec glob or protected tag: never touched
    HUMAN = "human"  # console password or MFA device
    WORKLOAD = "workload"  # programmatic keys only: needs a role, not a person
    UNUSED = "unused"  # no credential used within inactive_days, or none at all


@dataclass
class AccessKey:
    key_id: str
    status: str  # Active | Inactive
    created: datetime | None = None
    last_used_date: datetime | None = None
    last_used_service: str | None = None
    last_used_region: str | None = None


@dataclass
class MfaDevice:
    serial: str
    enabled: datetime | None = None
    virtual: bool = True


@dataclass
class SshPublicKey:
    key_id: str
    status: str
    uploaded: datetime | None = None


@dataclass
class SigningCertificate:
    certificate_id: str
    status: str
    uploaded: datetime | None = None


@dataclass
class ServiceSpecificCredential:
    credential_id: str
    service_name: str
    service_user_name: str
    status: str
    created: datetime | None = None


@dataclass
class AttachedPolicy:
    arn: str
    name: str


@dataclass
class InlinePolicy:
    name: str
    document: dict[str, Any]


@dataclass
class ManagedPolicy:
    """A managed policy referenced in the account, with its default version's document."""

    arn: str
    name: str
    path: str = "/"
    aws_managed: bool = False
    default_version_id: str | None = None
    document: dict[str, Any] | None = None


@dataclass
class Group:
    name: str
    group_id: str
    arn: str
    path: str = "/"
    attached_policies: list[AttachedPolicy] = field(default_factory=list)
    inline_policies: list[InlinePolicy] = field(default_factory=list)


@dataclass
class User:
    name: str
    user_id: str
    arn: str
    path: str = "/"
    created: datetime | None = None
    password_enabled: bool = False
    password_last_used: datetime | None = None
    password_last_changed: datetime | None = None
    mfa_active: bool = False
    access_keys: list[AccessKey] = field(default_factory=list)
    mfa_devices: list[MfaDevice] = field(default_factory=list)
    ssh_public_keys: list[SshPublicKey] = field(default_factory=list)
    signing_certificates: list[SigningCertificate] = field(default_factory=list)
    service_specific_credentials: list[ServiceSpecificCredential] = field(default_factory=list)
    attached_policies: list[AttachedPolicy] = field(default_factory=list)
    inline_policies: list[InlinePolicy] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    permissions_boundary_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    user_class: UserClass | None = None
    class_reason: str = ""
    last_activity: datetime | None = None


@dataclass
class Account:
    account_id: str
    name: str = ""
    email: str = ""
    status: str = "ACTIVE"
    parent_id: str | None = None  # OU or root id


@dataclass
class AccountInventory:
    """Everything one account's inventory task found (or why it found nothing)."""

    account: Account
    users: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    managed_policies: list[ManagedPolicy] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # calls the endpoint does not implement
    error: str | None = None  # set when the account could not be inventoried at all
    # IAM GetAccountSummary's SummaryMap Roles and RolesQuota: the roles the account has and
    # may have (None: not read). Every permission set provisioned there is one more role.
    roles: int | None = None
    roles_quota: int | None = None


@dataclass
class Finding:
    """A fact worth a human's attention, with a severity; plain data, like parliament's."""

    severity: str  # info | warning | error | blocking
    kind: str  # e.g. "cannot-assume-role", "inventory-gap", "suspended-account"
    message: str
    account_id: str | None = None
    subject: str | None = None  # user or group name
    details: dict[str, Any] = field(default_factory=dict)


# -- Identity Center side: the identity store as the IdP sync left it, and the mapping ------


class MatchStatus(StrEnum):
    MATCHED = "matched"
    UNMATCHED = "unmatched"
    AMBIGUOUS = "ambiguous"  # more than one candidate: never guess


@dataclass
class IdentityUser:
    """A user of IAM Identity Center's identity store (synced from the company IdP)."""

    user_id: str
    user_name: str
    display_name: str = ""
    emails: list[str] = field(default_factory=list)
    external_id: str | None = None


@dataclass
class IdentityGroup:
    group_id: str
    display_name: str
    member_ids: list[str] = field(default_factory=list)  # identity-store user ids


@dataclass
class UserMapping:
    """Which identity an IAM user of one account maps to, and the rule that decided it."""

    account_id: str
    iam_user: str
    status: MatchStatus
    rule: str | None = None  # the rule that matched (or found the ambiguity)
    identity_user_id: str | None = None
    identity_user_name: str | None = None
    candidates: list[str] = field(default_factory=list)  # identity user names, when ambiguous
    reason: str = ""


@dataclass
class GroupMapping:
    """Which identity-store group an IAM group of one account maps to, if any."""

    account_id: str
    iam_group: str
    status: MatchStatus
    rule: str | None = None
    identity_group_id: str | None = None
    identity_group_name: str | None = None
    reason: str = ""
