"""Each inventoried account's IAM roles and role quota; the snapshot's management and caller
accounts (delegated administration).

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
# 0012 is another branch's (usage reads): when both are merged this revises 0012.
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("snapshot_accounts") as batch:
        batch.add_column(sa.Column("roles", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("roles_quota", sa.Integer(), nullable=True))
    with op.batch_alter_table("snapshots") as batch:
        batch.add_column(sa.Column("management_account_id", sa.String(length=12), nullable=True))
        batch.add_column(sa.Column("caller_account_id", sa.String(length=12), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("snapshots") as batch:
        batch.drop_column("caller_account_id")
        batch.drop_column("management_account_id")
    with op.batch_alter_table("snapshot_accounts") as batch:
        batch.drop_column("roles_quota")
        batch.drop_column("roles")
