"""Journal events and run processes: what each run did, and which process runs it.

The journal holds one row per (plan, action) with its latest state; a resume or a rollback
re-stamps that row. The events keep each run's own outcomes, so a run's status shows what that
run did and the stage's current state is read separately. ``runs.process`` (host:pid) tells a
run whose process is gone (interrupted) from one still running.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("process", sa.String(length=256), nullable=True))
    op.create_table(
        "journal_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("plan_id", ID, nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("action_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_journal_events_run_id_runs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
            name=op.f("fk_journal_events_plan_id_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_events")),
    )
    op.create_index(op.f("ix_journal_events_run_id"), "journal_events", ["run_id"], unique=False)
    op.create_index(op.f("ix_journal_events_plan_id"), "journal_events", ["plan_id"], unique=False)


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("journal_events")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("process")
