"""The salt a running key scan's batch runs on a work pool share, only while it runs.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    # UNLOGGED on PostgreSQL: a salt lives for one scan, so it is never written to the WAL,
    # and so never reaches a WAL archive, a base backup's WAL or a streaming replica, where a
    # row deleted minutes later would be kept for as long as they are; after a crash the
    # table comes back empty, which ends the scans that were running (their batches refuse).
    unlogged = ["UNLOGGED"] if op.get_bind().dialect.name == "postgresql" else []
    op.create_table(
        "key_scan_salts",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_key_scan_salts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_key_scan_salts")),
        prefixes=unlogged,
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("key_scan_salts")
