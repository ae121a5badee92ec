"""Snapshot versions: a user read again during its deletion keeps its earlier snapshot too.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    # SQLite can't drop a constraint in place: batch mode copies the table.
    with op.batch_alter_table("user_snapshots") as batch:
        batch.drop_constraint(
            op.f("uq_user_snapshots_plan_id_account_id_user_name"), type_="unique"
        )


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades; keeps only each user's newest)."""
    op.execute(
        "DELETE FROM user_snapshots WHERE id NOT IN (SELECT MAX(id) FROM user_snapshots "
        "GROUP BY plan_id, account_id, user_name)"
    )
    with op.batch_alter_table("user_snapshots") as batch:
        batch.create_unique_constraint(
            op.f("uq_user_snapshots_plan_id_account_id_user_name"),
            ["plan_id", "account_id", "user_name"],
        )
