"""Workloads: where each workload user's keys are used from, one row per placement per run.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "workload_placements",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("runtime", sa.String(length=32), nullable=False),
        sa.Column("confidence", sa.String(length=16), nullable=False),
        sa.Column("role_first_used", WHEN, nullable=True),
        sa.Column("recorded", WHEN, nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_workload_placements_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_workload_placements_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workload_placements")),
    )
    for column in ("migration_id", "run_id"):
        op.create_index(
            op.f(f"ix_workload_placements_{column}"),
            "workload_placements",
            [column],
            unique=False,
        )


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("workload_placements")
