"""Hard-coded key scans: findings joined with the inventory, what each scan covered, what it
could not read, and approvers' acceptances of hard-coded keys.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"), ondelete="CASCADE"
    )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "key_scan_findings",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("unit", sa.String(length=512), nullable=False),
        sa.Column("classification", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=128), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("root", sa.Text(), nullable=True),
        sa.Column("commit_id", sa.String(length=64), nullable=True),
        sa.Column("blob_id", sa.String(length=64), nullable=True),
        sa.Column("history_only", sa.Boolean(), nullable=False),
        sa.Column("found_in_account", sa.String(length=12), nullable=True),
        sa.Column("region", sa.String(length=32), nullable=True),
        sa.Column("pair_found", sa.Boolean(), nullable=False),
        sa.Column("pair_hmac", sa.String(length=64), nullable=True),
        sa.Column("owner_account_id", sa.String(length=12), nullable=True),
        sa.Column("owner_user", sa.String(length=128), nullable=True),
        sa.Column("owner_class", sa.String(length=16), nullable=True),
        sa.Column("key_status", sa.String(length=16), nullable=True),
        sa.Column("key_last_used", WHEN, nullable=True),
        _run_fk("key_scan_findings"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_scan_findings")),
    )
    op.create_index(
        op.f("ix_key_scan_findings_run_id"), "key_scan_findings", ["run_id"], unique=False
    )
    op.create_index(
        op.f("ix_key_scan_findings_key_id"), "key_scan_findings", ["key_id"], unique=False
    )
    op.create_table(
        "key_scan_units",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("unit", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _run_fk("key_scan_units"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_scan_units")),
        sa.UniqueConstraint("run_id", "unit", name=op.f("uq_key_scan_units_run_id_unit")),
    )
    op.create_index(op.f("ix_key_scan_units_run_id"), "key_scan_units", ["run_id"], unique=False)
    op.create_table(
        "key_scan_problems",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("root", sa.Text(), nullable=True),
        sa.Column("account_id", sa.String(length=12), nullable=True),
        _run_fk("key_scan_problems"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_scan_problems")),
    )
    op.create_index(
        op.f("ix_key_scan_problems_run_id"), "key_scan_problems", ["run_id"], unique=False
    )
    op.create_table(
        "key_acceptances",
        sa.Column("id", ID, nullable=False),
        sa.Column("migration_id", ID, nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("user_name", sa.String(length=128), nullable=False),
        sa.Column("approver", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("key_ids", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("scan_run_id", ID, nullable=True),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["migration_id"],
            ["migrations.id"],
            name=op.f("fk_key_acceptances_migration_id_migrations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_acceptances")),
    )
    op.create_index(
        op.f("ix_key_acceptances_migration_id"), "key_acceptances", ["migration_id"], unique=False
    )


def downgrade() -> None:
    """Revert this revision (iamc itself never downgrades)."""
    op.drop_table("key_acceptances")
    op.drop_table("key_scan_problems")
    op.drop_table("key_scan_units")
    op.drop_table("key_scan_findings")
