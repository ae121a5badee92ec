"""Rate buckets: one token bucket per AWS API family and account, shared by every worker.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
# Issue 27's chain makes this revise 0014 (notices per recipient); this branch has no 0014 yet.
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    # UNLOGGED on PostgreSQL: a bucket is a few seconds' worth of state, so a take need not
    # wait for the WAL to reach the disk (~1 ms each); after a crash the table comes back
    # empty and the buckets start full, as after a pause.
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("available", sa.Float(), nullable=False),
        sa.Column("stamp", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_buckets")),
        prefixes=unlogged,
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("rate_buckets")
