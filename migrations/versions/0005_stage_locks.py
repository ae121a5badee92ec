"""Stage locks: one process at a time may change a plan's stage (apply, resume, rollback).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "stage_locks",
        sa.Column("id", ID, nullable=False),
        sa.Column("plan_id", ID, nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=False),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("acquired", WHEN, nullable=False),
        sa.Column("heartbeat", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_stage_locks_plan_id_plans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_locks")),
        sa.UniqueConstraint("plan_id", "stage", name=op.f("uq_stage_locks_plan_id_stage")),
    )
    op.create_index(op.f("ix_stage_locks_plan_id"), "stage_locks", ["plan_id"], unique=False)


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("stage_locks")
