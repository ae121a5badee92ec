"""Identity mapping: identity-store users and groups, and how IAM users and groups map to them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0001: BIGINT keys on PostgreSQL, INTEGER (the autoincrementing rowid) on SQLite.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)


def _mapping_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["mapping_id"],
        ["mappings.id"],
        name=op.f(f"fk_{table}_mapping_id_mappings"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "mappings",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("snapshot_id", ID, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_mappings_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_mappings_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mappings")),
        sa.UniqueConstraint("run_id", name=op.f("uq_mappings_run_id")),
    )
    op.create_index(op.f("ix_mappings_snapshot_id"), "mappings", ["snapshot_id"], unique=False)

    op.create_table(
        "identity_users",
        sa.Column("id", ID, nullable=False),
        sa.Column("mapping_id", ID, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=1024), nullable=False),
        sa.Column("emails", JSON, nullable=False),
        sa.Column("external_id", sa.String(length=256), nullable=True),
        _mapping_fk("identity_users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_users")),
        sa.UniqueConstraint(
            "mapping_id", "user_id", name=op.f("uq_identity_users_mapping_id_user_id")
        ),
    )
    op.create_index(
        op.f("ix_identity_users_mapping_id"), "identity_users", ["mapping_id"], unique=False
    )

    op.create_table(
        "identity_groups",
        sa.Column("id", ID, nullable=False),
        sa.Column("mapping_id", ID, nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=1024), nullable=False),
        sa.Column("member_ids", JSON, nullable=False),
        _mapping_fk("identity_groups"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_groups")),
        sa.UniqueConstraint(
            "mapping_id", "group_id", name=op.f("uq_identity_groups_mapping_id_group_id")
        ),
    )
    op.create_index(
        op.f("ix_identity_groups_mapping_id"), "identity_groups", ["mapping_id"], unique=False
    )

    op.create_table(
        "user_mappings",
        sa.Column("id", ID, nullable=False),
        sa.Column("mapping_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("iam_user", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=256), nullable=True),
        sa.Column("identity_user_id", sa.String(length=64), nullable=True),
        sa.Column("identity_user_name", sa.String(length=128), nullable=True),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _mapping_fk("user_mappings"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_mappings")),
        sa.UniqueConstraint(
            "mapping_id",
            "account_id",
            "iam_user",
            name=op.f("uq_user_mappings_mapping_id_account_id_iam_user"),
        ),
    )
    op.create_index(
        op.f("ix_user_mappings_mapping_id"), "user_mappings", ["mapping_id"], unique=False
    )

    op.create_table(
        "group_mappings",
        sa.Column("id", ID, nullable=False),
        sa.Column("mapping_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("iam_group", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rule", sa.String(length=256), nullable=True),
        sa.Column("identity_group_id", sa.String(length=64), nullable=True),
        sa.Column("identity_group_name", sa.String(length=1024), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        _mapping_fk("group_mappings"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_group_mappings")),
        sa.UniqueConstraint(
            "mapping_id",
            "account_id",
            "iam_group",
            name=op.f("uq_group_mappings_mapping_id_account_id_iam_group"),
        ),
    )
    op.create_index(
        op.f("ix_group_mappings_mapping_id"), "group_mappings", ["mapping_id"], unique=False
    )


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("group_mappings")
    op.drop_table("user_mappings")
    op.drop_table("identity_groups")
    op.drop_table("identity_users")
    op.drop_table("mappings")
