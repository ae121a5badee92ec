"""Models of mapping runs, plans and approvals, the step journal, key scans and retiring users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from state.models.base import Base, Id, Json, UtcDateTime, parent

# -- Identity mapping (revision 0002) ---------------------------------------------------------


class MappingRow(Base):
    """One mapping run's result: computed from an inventory snapshot and the identity store."""

    __tablename__ = "mappings"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), unique=True)
    snapshot_id: Mapped[int] = parent("snapshots")
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class IdentityUserRow(Base):
    """An identity-store user as the mapping saw it."""

    __tablename__ = "identity_users"
    __table_args__ = (UniqueConstraint("mapping_id", "user_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    mapping_id: Mapped[int] = parent("mappings")
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
    mapping_id: Mapped[int] = parent("mappings")
    group_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(1024))
    member_ids: Mapped[list[str]] = mapped_column(Json)


class UserMappingRow(Base):
    """Which identity an IAM user of an account maps to, and the rule that decided it."""

    __tablename__ = "user_mappings"
    __table_args__ = (UniqueConstraint("mapping_id", "account_id", "iam_user"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    mapping_id: Mapped[int] = parent("mappings")
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
    mapping_id: Mapped[int] = parent("mappings")
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
    migration_id: Mapped[int] = parent("migrations")
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
    plan_id: Mapped[int] = parent("plans")
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
    plan_id: Mapped[int] = parent("plans")
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
    plan_id: Mapped[int] = parent("plans")
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
    plan_id: Mapped[int] = parent("plans")
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
    migration_id: Mapped[int] = parent("migrations")
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
    migration_id: Mapped[int] = parent("migrations")
    plan_id: Mapped[int] = parent("plans")
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
    migration_id: Mapped[int] = parent("migrations")
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
    migration_id: Mapped[int] = parent("migrations")
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # delete | keep
    decided_by: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
