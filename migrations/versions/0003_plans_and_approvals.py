"""Plans and approvals: the dry-run plan a change board approves, and who approved it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0001: BIGINT keys on PostgreSQL, INTEGER (the autoincrementing rowid) on SQLite.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "plans",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("created", WHEN, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("blocking", sa.Integer(), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_plans_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_plans_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
        sa.UniqueConstraint("migration_id", "hash", name=op.f("uq_plans_migration_id_hash")),
    )
    op.create_index(op.f("ix_plans_migration_id"), "plans", ["migration_id"], unique=False)
    op.create_index(op.f("ix_plans_run_id"), "plans", ["run_id"], unique=False)
    op.create_table(
        "approvals",
        sa.Column("id", ID, nullable=False),
        sa.Column("plan_id", ID, nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("approver", sa.String(length=256), nullable=False),
        sa.Column("ticket", sa.String(length=256), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("plan_hash", sa.String(length=64), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_approvals_plan_id_plans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_plan_id"), "approvals", ["plan_id"], unique=False)


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("approvals")
    op.drop_table("plans")
