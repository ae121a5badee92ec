"""Waves: the wave a plan is for, so each wave's plans and journal can be found by it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("wave", sa.String(length=64), nullable=True))
        batch.create_index(op.f("ix_plans_wave"), ["wave"], unique=False)


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    with op.batch_alter_table("plans") as batch:
        batch.drop_index(op.f("ix_plans_wave"))
        batch.drop_column("wave")
