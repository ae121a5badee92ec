"""What each account's child flow run on a work-pool worker reported, for its parent to gather.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "account_results",
        sa.Column("id", ID, nullable=False),
        sa.Column("work", sa.String(length=120), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_results")),
        sa.UniqueConstraint("work", "account_id", name=op.f("uq_account_results_work_account_id")),
    )
    op.create_index(op.f("ix_account_results_work"), "account_results", ["work"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index(op.f("ix_account_results_work"), table_name="account_results")
    op.drop_table("account_results")
