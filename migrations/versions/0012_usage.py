"""Usage reads: what each IAM user used in the least-privilege window, one row per user.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "usage_reads",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("snapshot_id", ID, nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("read_at", WHEN, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("unread", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_usage_reads_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_usage_reads_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_usage_reads_snapshot_id_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_reads")),
    )
    for column in ("migration_id", "run_id", "snapshot_id"):
        op.create_index(op.f(f"ix_usage_reads_{column}"), "usage_reads", [column], unique=False)
    op.create_table(
        "user_usage",
        sa.Column("id", ID, nullable=False),
        sa.Column("read_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["read_id"],
            ["usage_reads.id"],
            name=op.f("fk_user_usage_read_id_usage_reads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_usage")),
        sa.UniqueConstraint(
            "read_id",
            "account_id",
            "user_name",
            name=op.f("uq_user_usage_read_id_account_id_user_name"),
        ),
    )
    op.create_index(op.f("ix_user_usage_read_id"), "user_usage", ["read_id"], unique=False)


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("user_usage")
    op.drop_table("usage_reads")
