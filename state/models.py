"""SQLAlchemy models of the state DB: migrations, runs, inventory snapshots and findings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names on every backend, so later migrations can name what they
# alter (SQLite batch mode needs names; PostgreSQL would otherwise invent its own).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in as UTC and always comes out timezone-aware UTC.

    SQLite has no timezone type and returns naive values; PostgreSQL returns the session's
    zone. A naive value handed to us is taken to be UTC already (boto3 returns aware ones).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite would store the "+00:00" suffix as text and compare strings; keep it naive UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON null and SQL NULL differ; store a missing document as SQL NULL so "IS NULL" finds it.
Json = JSON(none_as_null=True)
# Keys are BIGINT on PostgreSQL (snapshots of many accounts add up) but INTEGER on SQLite,
# where only "INTEGER PRIMARY KEY" is the autoincrementing rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _parent(table: str, *, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(
        Id, ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=nullable, index=True
    )


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
    migration_id: Mapped[int] = _parent("migrations")
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
    migration_id: Mapped[int] = _parent("migrations")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    completed: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SnapshotAccount(Base):
    """One account in a snapshot, with the calls it could not make and why it failed, if so."""

    __tablename__ = "snapshot_accounts"
    __table_args__ = (UniqueConstraint("snapshot_id", "account_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_id: Mapped[int] = _parent("snapshots")
    account_id: Mapped[str] = mapped_column(String(12))
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(100))
    gaps: Mapped[list[str]] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)


class ManagedPolicy(Base):
    """A managed policy referenced in an account, with its default version's document."""

    __tablename__ = "managed_policies"
    __table_args__ = (UniqueConstraint("snapshot_account_id", "arn"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_account_id: Mapped[int] = _parent("snapshot_accounts")
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
    snapshot_account_id: Mapped[int] = _parent("snapshot_accounts")
    name: Mapped[str] = mapped_column(String(128))
    group_id: Mapped[str] = mapped_column(String(128))
    arn: Mapped[str] = mapped_column(String(2048))
    path: Mapped[str] = mapped_column(String(512))


class IamUser(Base):
    """An IAM user of an account: identity, console-password facts (never the password), class."""

    __tablename__ = "iam_users"
    __table_args__ = (UniqueConstraint("snapshot_account_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    snapshot_account_id: Mapped[int] = _parent("snapshot_accounts")
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
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(String(256))


class GroupMembership(Base):
    """A user's membership of a group, by group name (as IAM lists it for the user)."""

    __tablename__ = "group_memberships"
    __table_args__ = (UniqueConstraint("user_id", "group_name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    group_name: Mapped[str] = mapped_column(String(128))


class AccessKey(Base):
    """An access key's id and activity; the secret is never stored (there is no column for it)."""

    __tablename__ = "access_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_used_service: Mapped[str | None] = mapped_column(String(128))
    last_used_region: Mapped[str | None] = mapped_column(String(64))


class MfaDevice(Base):
    """An MFA device's serial (ARN for virtual ones); never its seed."""

    __tablename__ = "mfa_devices"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    serial: Mapped[str] = mapped_column(String(256))
    enabled: Mapped[datetime | None] = mapped_column(UtcDateTime)
    virtual: Mapped[bool] = mapped_column(Boolean)


class SshPublicKey(Base):
    """An SSH public key's id and status (for CodeCommit)."""

    __tablename__ = "ssh_public_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    uploaded: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SigningCertificate(Base):
    """An X.509 signing certificate's id and status."""

    __tablename__ = "signing_certificates"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    certificate_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    uploaded: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ServiceSpecificCredential(Base):
    """A service-specific (e.g. CodeCommit Git) credential's id; never its password."""

    __tablename__ = "service_specific_credentials"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = _parent("iam_users")
    position: Mapped[int] = mapped_column(Integer)
    credential_id: Mapped[str] = mapped_column(String(128))
    service_name: Mapped[str] = mapped_column(String(128))
    service_user_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime | None] = mapped_column(UtcDateTime)


# A policy row belongs to exactly one principal: a user or a group.
_ONE_PRINCIPAL = "(user_id IS NULL) <> (group_id IS NULL)"


class PolicyAttachment(Base):
    """A managed policy attached to a user or a group."""

    __tablename__ = "policy_attachments"
    __table_args__ = (CheckConstraint(_ONE_PRINCIPAL, name="one_principal"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int | None] = _parent("iam_users", nullable=True)
    group_id: Mapped[int | None] = _parent("iam_groups", nullable=True)
    position: Mapped[int] = mapped_column(Integer)
    arn: Mapped[str] = mapped_column(String(2048))
    name: Mapped[str] = mapped_column(String(128))


class InlinePolicy(Base):
    """An inline policy of a user or a group, with its document."""

    __tablename__ = "inline_policies"
    __table_args__ = (CheckConstraint(_ONE_PRINCIPAL, name="one_principal"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int | None] = _parent("iam_users", nullable=True)
    group_id: Mapped[int | None] = _parent("iam_groups", nullable=True)
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


# -- Identity mapping (revision 0002) ---------------------------------------------------------


class MappingRow(Base):
    """One mapping run's result: computed from an inventory snapshot and the identity store."""

    __tablename__ = "mappings"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    snapshot_id: Mapped[int] = _parent("snapshots")
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityUserRow(Base):
    """An identity-store user as the mapping saw it."""

    __tablename__ = "identity_users"
    __table_args__ = (UniqueConstraint("mapping_id", "user_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    mapping_id: Mapped[int] = _parent("mappings")
    user_id: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(1024))
    emails: Mapped[list[str]] = mapped_column(Json)
    external_id: Mapped[str | None] = mapped_column(String(256))


class IdentityGroupRow(Base):
    """An identity-store group with its members' user ids."""

    __tablename__ = "identity_groups"
    __table_args__ = (UniqueConstraint("mapping_id", "group_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    mapping_id: Mapped[int] = _parent("mappings")
    group_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(1024))
    member_ids: Mapped[list[str]] = mapped_column(Json)


class UserMappingRow(Base):
    """Which identity an IAM user of an account maps to, and the rule that decided it."""

    __tablename__ = "user_mappings"
    __table_args__ = (UniqueConstraint("mapping_id", "account_id", "iam_user"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    mapping_id: Mapped[int] = _parent("mappings")
    account_id: Mapped[str] = mapped_column(String(12))
    iam_user: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(256))
    identity_user_id: Mapped[str | None] = mapped_column(String(64))
    identity_user_name: Mapped[str | None] = mapped_column(String(128))
    candidates: Mapped[list[str]] = mapped_column(Json)
    reason: Mapped[str] = mapped_column(Text)


class GroupMappingRow(Base):
    """Which identity-store group an IAM group of an account maps to, if any."""

    __tablename__ = "group_mappings"
    __table_args__ = (UniqueConstraint("mapping_id", "account_id", "iam_group"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    mapping_id: Mapped[int] = _parent("mappings")
    account_id: Mapped[str] = mapped_column(String(12))
    iam_group: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(256))
    identity_group_id: Mapped[str | None] = mapped_column(String(64))
    identity_group_name: Mapped[str | None] = mapped_column(String(1024))
    reason: Mapped[str] = mapped_column(Text)


class PlanRow(Base):
    """A computed plan: its content (actions, fingerprints) and the hash of that content."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("migration_id", "hash"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = _parent("migrations")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    hash: Mapped[str] = mapped_column(String(64))
    blocking: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column(Json)
    # The wave the plan is for (None: the spec has no waves); also in its content.
    wave: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class ApprovalRow(Base):
    """Who approved (or rejected) which plan hash, for which stage, and when."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    plan_id: Mapped[int] = _parent("plans")
    stage: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    approver: Mapped[str] = mapped_column(String(256))
    ticket: Mapped[str] = mapped_column(String(256))
    comment: Mapped[str] = mapped_column(Text)
    plan_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)


# -- Step journal (revision 0004) -------------------------------------------------------------


class JournalRow(Base):
    """One mutating action of a plan: its intent before the AWS call, outcome after, and undo.

    Forward actions use the plan's action id; a rollback of one uses ``rollback:<action id>``.
    ``intent["existed_before"]`` tells a thing we created (ours to finish and undo) from one
    that was already there (adopted, never undone).
    """

    __tablename__ = "journal"
    __table_args__ = (UniqueConstraint("plan_id", "action_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int] = _parent("plans")
    stage: Mapped[str] = mapped_column(String(16))
    action_id: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(16))
    intent: Mapped[dict[str, Any]] = mapped_column(Json)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(Json)
    undo: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    started: Mapped[datetime] = mapped_column(UtcDateTime)
    finished: Mapped[datetime | None] = mapped_column(UtcDateTime)


class JournalEventRow(Base):
    """One outcome of one action in one run: the history the journal row's latest state hides."""

    __tablename__ = "journal_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int] = _parent("plans")
    stage: Mapped[str] = mapped_column(String(16))
    action_id: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class StageLockRow(Base):
    """Who is changing a plan's stage right now: one process at a time, kept by a heartbeat."""

    __tablename__ = "stage_locks"
    __table_args__ = (UniqueConstraint("plan_id", "stage"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    plan_id: Mapped[int] = _parent("plans")
    stage: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str] = mapped_column(String(256))
    run_id: Mapped[int | None] = mapped_column(Id)
    acquired: Mapped[datetime] = mapped_column(UtcDateTime)
    heartbeat: Mapped[datetime] = mapped_column(UtcDateTime)


# -- Hard-coded key scans (revision 0007) -----------------------------------------------------


class KeyScanFindingRow(Base):
    """Where a key scan found an access key id (or a look-alike), and whose key it is.

    The key id is whole: the state DB is the one place whole ids live. Of a secret access key
    only whether it was found next to the id (``pair_found``) and its HMAC under the scan's
    salt (``pair_hmac``, comparable within that scan only) are kept; the secret never is.
    """

    __tablename__ = "key_scan_findings"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(String(512))  # what was scanned: a path or account/source
    classification: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(Text)
    line: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str | None] = mapped_column(String(128), index=True)
    note: Mapped[str] = mapped_column(Text)
    root: Mapped[str | None] = mapped_column(Text)
    commit_id: Mapped[str | None] = mapped_column(String(64))
    blob_id: Mapped[str | None] = mapped_column(String(64))
    history_only: Mapped[bool] = mapped_column(Boolean)
    found_in_account: Mapped[str | None] = mapped_column(String(12))
    region: Mapped[str | None] = mapped_column(String(32))
    pair_found: Mapped[bool] = mapped_column(Boolean)
    pair_hmac: Mapped[str | None] = mapped_column(String(64))
    owner_account_id: Mapped[str | None] = mapped_column(String(12))
    owner_user: Mapped[str | None] = mapped_column(String(128))
    owner_class: Mapped[str | None] = mapped_column(String(16))
    key_status: Mapped[str | None] = mapped_column(String(16))
    key_last_used: Mapped[datetime | None] = mapped_column(UtcDateTime)


class KeyScanUnitRow(Base):
    """One thing a key scan set out to read (a code path, or one source of one account in one
    region) and how that went: scanned, skipped, gap or failed. A later scan supersedes an
    earlier one's findings only for the units it scanned."""

    __tablename__ = "key_scan_units"
    __table_args__ = (UniqueConstraint("run_id", "unit"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    unit: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)


class KeyScanProblemRow(Base):
    """Something a key scan could not read (completely): a skipped item or a gap, and why."""

    __tablename__ = "key_scan_problems"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # skipped | gap | failed
    source: Mapped[str] = mapped_column(String(32))
    location: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    root: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(String(12))


class KeyAcceptanceRow(Base):
    """An approver's recorded decision that a user's hard-coded keys need not hold its disable
    and delete: for the key ids found when it was made (a key found later blocks again)."""

    __tablename__ = "key_acceptances"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = _parent("migrations")
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(128))
    approver: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    key_ids: Mapped[list[str]] = mapped_column(Json)
    scan_run_id: Mapped[int | None] = mapped_column(Id)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


# -- Retiring users: snapshots before deletion, bake-period evidence and decisions (0009) -----


class UserSnapshotRow(Base):
    """What an IAM user was, stored right before its first delete action (never a secret).

    ``content`` holds path, tags, boundary, inline documents, attached policy ARNs, groups,
    key ids and dates, MFA serials, SSH public key bodies, signing certificate bodies and
    whether a console password existed: what ``iamc restore`` re-creates or names. A user
    that changed before a resumed deletion gets a newer row; the earlier ones stay.
    """

    __tablename__ = "user_snapshots"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = _parent("migrations")
    plan_id: Mapped[int] = _parent("plans")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    arn: Mapped[str] = mapped_column(String(2048))
    taken: Mapped[datetime] = mapped_column(UtcDateTime)
    content: Mapped[dict[str, Any]] = mapped_column(Json)


class UseEvidenceRow(Base):
    """One sign that a disabled user was still being used: who, when, where, what."""

    __tablename__ = "use_evidence"
    __table_args__ = (UniqueConstraint("migration_id", "account_id", "user_name", "event_key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = _parent("migrations")
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(256))  # CloudTrail event id, or key+date
    source: Mapped[str] = mapped_column(String(32))  # cloudtrail | access-key-last-used
    event_time: Mapped[datetime] = mapped_column(UtcDateTime)
    event_name: Mapped[str] = mapped_column(String(128))
    event_source: Mapped[str | None] = mapped_column(String(128))
    source_ip: Mapped[str | None] = mapped_column(String(128))
    user_agent: Mapped[str | None] = mapped_column(Text)
    access_key_id: Mapped[str | None] = mapped_column(String(128))
    error_code: Mapped[str | None] = mapped_column(String(128))
    found: Mapped[datetime] = mapped_column(UtcDateTime)


class BakeDecisionRow(Base):
    """A person's decision about a disabled user with use evidence: delete it anyway, or keep."""

    __tablename__ = "bake_decisions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = _parent("migrations")
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # delete | keep
    decided_by: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
