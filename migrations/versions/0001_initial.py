"""Initial schema: migrations, runs, inventory snapshots and findings.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keys are BIGINT on PostgreSQL but INTEGER on SQLite, where only INTEGER PRIMARY KEY
# autoincrements (as in state.models).
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "migrations",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
        sa.UniqueConstraint("name", name=op.f("uq_migrations_name")),
    )
    op.create_table(
        "runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("params", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("summary", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_runs_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_migration_id"), "runs", ["migration_id"], unique=False)

    op.create_table(
        "findings",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=True),
        sa.Column("subject", sa.String(length=256), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(none_as_null=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_findings_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    op.create_index("ix_findings_run_id_kind", "findings", ["run_id", "kind"], unique=False)

    op.create_table(
        "snapshots",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_snapshots_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_snapshots_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("run_id", name=op.f("uq_snapshots_run_id")),
    )
    op.create_index(op.f("ix_snapshots_migration_id"), "snapshots", ["migration_id"], unique=False)

    op.create_table(
        "snapshot_accounts",
        sa.Column("id", ID, nullable=False),
        sa.Column("snapshot_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("parent_id", sa.String(length=100), nullable=True),
        sa.Column("gaps", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_snapshot_accounts_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_accounts")),
        sa.UniqueConstraint(
            "snapshot_id", "account_id", name=op.f("uq_snapshot_accounts_snapshot_id_account_id")
        ),
    )
    op.create_index(
        op.f("ix_snapshot_accounts_snapshot_id"), "snapshot_accounts", ["snapshot_id"], unique=False
    )

    op.create_table(
        "iam_groups",
        sa.Column("id", ID, nullable=False),
        sa.Column("snapshot_account_id", ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("group_id", sa.String(length=128), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_account_id"],
            ["snapshot_accounts.id"],
            name=op.f("fk_iam_groups_snapshot_account_id_snapshot_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iam_groups")),
        sa.UniqueConstraint(
            "snapshot_account_id", "name", name=op.f("uq_iam_groups_snapshot_account_id_name")
        ),
    )
    op.create_index(
        op.f("ix_iam_groups_snapshot_account_id"),
        "iam_groups",
        ["snapshot_account_id"],
        unique=False,
    )

    op.create_table(
        "iam_users",
        sa.Column("id", ID, nullable=False),
        sa.Column("snapshot_account_id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_enabled", sa.Boolean(), nullable=False),
        sa.Column("password_last_used", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_last_changed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mfa_active", sa.Boolean(), nullable=False),
        sa.Column("permissions_boundary_arn", sa.String(length=2048), nullable=True),
        sa.Column("user_class", sa.String(length=16), nullable=True),
        sa.Column("class_reason", sa.Text(), nullable=False),
        sa.Column("last_activity", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_account_id"],
            ["snapshot_accounts.id"],
            name=op.f("fk_iam_users_snapshot_account_id_snapshot_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_iam_users")),
        sa.UniqueConstraint(
            "snapshot_account_id", "name", name=op.f("uq_iam_users_snapshot_account_id_name")
        ),
    )
    op.create_index(
        op.f("ix_iam_users_snapshot_account_id"), "iam_users", ["snapshot_account_id"], unique=False
    )

    op.create_table(
        "managed_policies",
        sa.Column("id", ID, nullable=False),
        sa.Column("snapshot_account_id", ID, nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("aws_managed", sa.Boolean(), nullable=False),
        sa.Column("default_version_id", sa.String(length=32), nullable=True),
        sa.Column("document", sa.JSON(none_as_null=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_account_id"],
            ["snapshot_accounts.id"],
            name=op.f("fk_managed_policies_snapshot_account_id_snapshot_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_policies")),
        sa.UniqueConstraint(
            "snapshot_account_id", "arn", name=op.f("uq_managed_policies_snapshot_account_id_arn")
        ),
    )
    op.create_index(
        op.f("ix_managed_policies_snapshot_account_id"),
        "managed_policies",
        ["snapshot_account_id"],
        unique=False,
    )

    op.create_table(
        "access_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_service", sa.String(length=128), nullable=True),
        sa.Column("last_used_region", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_access_keys_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_keys")),
    )
    op.create_index(op.f("ix_access_keys_key_id"), "access_keys", ["key_id"], unique=False)
    op.create_index(op.f("ix_access_keys_user_id"), "access_keys", ["user_id"], unique=False)

    op.create_table(
        "group_memberships",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("group_name", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_group_memberships_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_memberships")),
        sa.UniqueConstraint(
            "user_id", "group_name", name=op.f("uq_group_memberships_user_id_group_name")
        ),
    )
    op.create_index(
        op.f("ix_group_memberships_user_id"), "group_memberships", ["user_id"], unique=False
    )

    op.create_table(
        "inline_policies",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("document", sa.JSON(none_as_null=True), nullable=False),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (group_id IS NULL)", name=op.f("ck_inline_policies_one_principal")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["iam_groups.id"],
            name=op.f("fk_inline_policies_group_id_iam_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_inline_policies_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inline_policies")),
    )
    op.create_index(
        op.f("ix_inline_policies_group_id"), "inline_policies", ["group_id"], unique=False
    )
    op.create_index(
        op.f("ix_inline_policies_user_id"), "inline_policies", ["user_id"], unique=False
    )

    op.create_table(
        "mfa_devices",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=256), nullable=False),
        sa.Column("enabled", sa.DateTime(timezone=True), nullable=True),
        sa.Column("virtual", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_mfa_devices_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_devices")),
    )
    op.create_index(op.f("ix_mfa_devices_user_id"), "mfa_devices", ["user_id"], unique=False)

    op.create_table(
        "policy_attachments",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (group_id IS NULL)",
            name=op.f("ck_policy_attachments_one_principal"),
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["iam_groups.id"],
            name=op.f("fk_policy_attachments_group_id_iam_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_policy_attachments_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_attachments")),
    )
    op.create_index(
        op.f("ix_policy_attachments_group_id"), "policy_attachments", ["group_id"], unique=False
    )
    op.create_index(
        op.f("ix_policy_attachments_user_id"), "policy_attachments", ["user_id"], unique=False
    )

    op.create_table(
        "service_specific_credentials",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("credential_id", sa.String(length=128), nullable=False),
        sa.Column("service_name", sa.String(length=128), nullable=False),
        sa.Column("service_user_name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_service_specific_credentials_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_specific_credentials")),
    )
    op.create_index(
        op.f("ix_service_specific_credentials_user_id"),
        "service_specific_credentials",
        ["user_id"],
        unique=False,
    )

    op.create_table(
        "signing_certificates",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("uploaded", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_signing_certificates_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_certificates")),
    )
    op.create_index(
        op.f("ix_signing_certificates_user_id"), "signing_certificates", ["user_id"], unique=False
    )

    op.create_table(
        "ssh_public_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("uploaded", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_ssh_public_keys_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_public_keys")),
    )
    op.create_index(
        op.f("ix_ssh_public_keys_user_id"), "ssh_public_keys", ["user_id"], unique=False
    )

    op.create_table(
        "user_tags",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["iam_users.id"],
            name=op.f("fk_user_tags_user_id_iam_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_tags")),
        sa.UniqueConstraint("user_id", "key", name=op.f("uq_user_tags_user_id_key")),
    )
    op.create_index(op.f("ix_user_tags_user_id"), "user_tags", ["user_id"], unique=False)


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("user_tags")
    op.drop_table("ssh_public_keys")
    op.drop_table("signing_certificates")
    op.drop_table("service_specific_credentials")
    op.drop_table("policy_attachments")
    op.drop_table("mfa_devices")
    op.drop_table("inline_policies")
    op.drop_table("group_memberships")
    op.drop_table("access_keys")
    op.drop_table("managed_policies")
    op.drop_table("iam_users")
    op.drop_table("iam_groups")
    op.drop_table("snapshot_accounts")
    op.drop_table("snapshots")
    op.drop_table("findings")
    op.drop_table("runs")
    op.drop_table("migrations")
