"""Models of migrations, runs, inventory snapshots (users, groups, credentials) and findings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from domain.credentials import (
    ACCESS_KEY,
    MFA_DEVICE,
    SERVICE_CREDENTIAL,
    SIGNING_CERTIFICATE,
    SSH_PUBLIC_KEY,
)
from state.models.base import Base, Id, Json, UtcDateTime, parent


class Migration(Base):
    """One named migration (a wave); its spec as last seen."""

    __tablename__ = "migrations"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(Json)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)


class Run(Base):
    """One execution of a flow (inventory, plan, apply, ...) for a migration."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = parent("migrations")
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    started: Mapped[datetime] = mapped_column(UtcDateTime)
    finished: Mapped[datetime | None] = mapped_column(UtcDateTime)
    params: Mapped[dict[str, Any] | None] = mapped_column(Json)
    summary: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    process: Mapped[str | None] = mapped_column(String(256))  # host:pid running it


class Snapshot(Base):
    """The inventory one run took; only a completed one counts as the latest."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = parent("migrations")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    completed: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The organization's management account (DescribeOrganization) and the account the tool
    # ran from (GetCallerIdentity): they differ when it runs as a delegated administrator.
    management_account_id: Mapped[str | None] = mapped_column(String(12))
    caller_account_id: Mapped[str | None] = mapped_column(String(12))


class SnapshotAccount(Base):
    """One account in a snapshot, with the calls it could not make and why it failed, if so."""

    __tablename__ = "snapshot_accounts"
    __table_args__ = (UniqueConstraint("snapshot_id", "account_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_id: Mapped[int] = parent("snapshots")
    account_id: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(100))
    gaps: Mapped[list[str]] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    # IAM GetAccountSummary: Roles and RolesQuota (None: not read).
    roles: Mapped[int | None] = mapped_column(Integer)
    roles_quota: Mapped[int | None] = mapped_column(Integer)


class ManagedPolicy(Base):
    """A managed policy referenced in an account, with its default version's document."""

    __tablename__ = "managed_policies"
    __table_args__ = (UniqueConstraint("snapshot_account_id", "arn"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_account_id: Mapped[int] = parent("snapshot_accounts")
    arn: Mapped[str] = mapped_column(String(2048))
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(String(512))
    aws_managed: Mapped[bool] = mapped_column(Boolean)
    default_version_id: Mapped[str | None] = mapped_column(String(32))
    document: Mapped[dict[str, Any] | None] = mapped_column(Json)


class IamGroup(Base):
    """An IAM group of an account."""

    __tablename__ = "iam_groups"
    __table_args__ = (UniqueConstraint("snapshot_account_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_account_id: Mapped[int] = parent("snapshot_accounts")
    name: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str] = mapped_column(String(128))
    arn: Mapped[str] = mapped_column(String(2048))
    path: Mapped[str] = mapped_column(String(512))


class IamUser(Base):
    """An IAM user of an account: identity, console-password facts (never the password), class."""

    __tablename__ = "iam_users"
    __table_args__ = (UniqueConstraint("snapshot_account_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_account_id: Mapped[int] = parent("snapshot_accounts")
    name: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    arn: Mapped[str] = mapped_column(String(2048))
    path: Mapped[str] = mapped_column(String(512))
    created: Mapped[datetime | None] = mapped_column(UtcDateTime)
    password_enabled: Mapped[bool] = mapped_column(Boolean)
    password_last_used: Mapped[datetime | None] = mapped_column(UtcDateTime)
    password_last_changed: Mapped[datetime | None] = mapped_column(UtcDateTime)
    mfa_active: Mapped[bool] = mapped_column(Boolean)
    permissions_boundary_arn: Mapped[str | None] = mapped_column(String(2048))
    user_class: Mapped[str | None] = mapped_column(String(16))
    class_reason: Mapped[str] = mapped_column(Text)
    last_activity: Mapped[datetime | None] = mapped_column(UtcDateTime)


class UserTag(Base):
    """One tag of a user."""

    __tablename__ = "user_tags"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(String(256))


class GroupMembership(Base):
    """A user's membership of a group, by group name (as IAM lists it for the user)."""

    __tablename__ = "group_memberships"
    __table_args__ = (UniqueConstraint("user_id", "group_name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    group_name: Mapped[str] = mapped_column(String(128))


class _UserCredential:
    """The columns every credential table shares: its user, its place in the user's list."""

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)


# Each table's other columns are its record's fields (domain.credentials.CredentialKind).
class AccessKey(_UserCredential, Base):
    """An access key's id and activity; the secret is never stored (there is no column for it)."""

    __tablename__ = "access_keys"

    key_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_service: Mapped[str | None] = mapped_column(String(128))
    last_used_region: Mapped[str | None] = mapped_column(String(64))


class MfaDevice(_UserCredential, Base):
    """An MFA device's serial (ARN for virtual ones); never its seed."""

    __tablename__ = "mfa_devices"

    serial: Mapped[str] = mapped_column(String(256))
    enabled: Mapped[datetime | None] = mapped_column(UtcDateTime)
    virtual: Mapped[bool] = mapped_column(Boolean)


class SshPublicKey(_UserCredential, Base):
    """An SSH public key's id and status (for CodeCommit)."""

    __tablename__ = "ssh_public_keys"

    key_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    uploaded: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SigningCertificate(_UserCredential, Base):
    """An X.509 signing certificate's id and status."""

    __tablename__ = "signing_certificates"

    certificate_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    uploaded: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ServiceSpecificCredential(_UserCredential, Base):
    """A service-specific (e.g. CodeCommit Git) credential's id; never its password."""

    __tablename__ = "service_specific_credentials"

    credential_id: Mapped[str] = mapped_column(String(128))
    service_name: Mapped[str] = mapped_column(String(128))
    service_user_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime | None] = mapped_column(UtcDateTime)


# credential kind name -> its table; the console password is columns of IamUser instead.
CREDENTIAL_TABLES: dict[str, type[_UserCredential]] = {
    ACCESS_KEY.name: AccessKey,
    MFA_DEVICE.name: MfaDevice,
    SSH_PUBLIC_KEY.name: SshPublicKey,
    SIGNING_CERTIFICATE.name: SigningCertificate,
    SERVICE_CREDENTIAL.name: ServiceSpecificCredential,
}


# A policy row belongs to exactly one principal: a user or a group.
_ONE_PRINCIPAL = "(user_id IS NULL) <> (group_id IS NULL)"


class PolicyAttachment(Base):
    """A managed policy attached to a user or a group."""

    __tablename__ = "policy_attachments"
    __table_args__ = (CheckConstraint(_ONE_PRINCIPAL, name="one_principal"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int | None] = parent("iam_users", nullable=True)
    group_id: Mapped[int | None] = parent("iam_groups", nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    arn: Mapped[str] = mapped_column(String(2048))
    name: Mapped[str] = mapped_column(String(128))


class InlinePolicy(Base):
    """An inline policy of a user or a group, with its document."""

    __tablename__ = "inline_policies"
    __table_args__ = (CheckConstraint(_ONE_PRINCIPAL, name="one_principal"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int | None] = parent("iam_users", nullable=True)
    group_id: Mapped[int | None] = parent("iam_groups", nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(128))
    document: Mapped[dict[str, Any]] = mapped_column(Json)


class FindingRow(Base):
    """A finding of a run: a fact worth a human's attention."""

    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_run_id_kind", "run_id", "kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"))
    severity: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(12))
    subject: Mapped[str | None] = mapped_column(String(256))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
