"""Retiring users: snapshots before deletion, bake-period use evidence and decisions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON(none_as_null=True)
WHEN = sa.DateTime(timezone=True)


def _migration_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["migration_id"],
        ["migrations.id"],
        name=op.f(f"fk_{table}_migration_id_migrations"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "user_snapshots",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("plan_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("arn", sa.String(length=2048), nullable=False),
        sa.Column("taken", WHEN, nullable=False),
        sa.Column("content", JSON, nullable=False),
        _migration_fk("user_snapshots"),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
            name=op.f("fk_user_snapshots_plan_id_plans"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_user_snapshots_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_snapshots")),
        sa.UniqueConstraint(
            "plan_id",
            "account_id",
            "user_name",
            name=op.f("uq_user_snapshots_plan_id_account_id_user_name"),
        ),
    )
    for column in ("migration_id", "plan_id", "run_id"):
        op.create_index(
            op.f(f"ix_user_snapshots_{column}"), "user_snapshots", [column], unique=False
        )
    op.create_table(
        "use_evidence",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("event_key", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("event_time", WHEN, nullable=False),
        sa.Column("event_name", sa.String(length=128), nullable=False),
        sa.Column("event_source", sa.String(length=128), nullable=True),
        sa.Column("source_ip", sa.String(length=128), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.Column("error_code", sa.String(length=128), nullable=True),
        sa.Column("found", WHEN, nullable=False),
        _migration_fk("use_evidence"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_use_evidence")),
        sa.UniqueConstraint(
            "migration_id",
            "account_id",
            "user_name",
            "event_key",
            name=op.f("uq_use_evidence_migration_id_account_id_user_name_event_key"),
        ),
    )
    op.create_index(
        op.f("ix_use_evidence_migration_id"), "use_evidence", ["migration_id"], unique=False
    )
    op.create_table(
        "bake_decisions",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        _migration_fk("bake_decisions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bake_decisions")),
    )
    op.create_index(
        op.f("ix_bake_decisions_migration_id"), "bake_decisions", ["migration_id"], unique=False
    )


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("bake_decisions")
    op.drop_table("use_evidence")
    op.drop_table("user_snapshots")
