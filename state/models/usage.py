"""Models of the usage step (revision 0012): one read per usage run, one row per user read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from state.models.base import Base, Id, Json, UtcDateTime, parent


class UsageReadRow(Base):
    """One read of an inventory snapshot's users' usage (``domain.usage.UsageRead``).

    ``unread`` is ``[[account, user or "*", why], ...]``; ``content_hash`` is
    ``UsageRead.content_hash()``, kept so a plan's reliance on a read is one comparison.
    """

    __tablename__ = "usage_reads"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = parent("migrations")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    snapshot_id: Mapped[int] = parent("snapshots")
    window_days: Mapped[int] = mapped_column(Integer)
    read_at: Mapped[datetime] = mapped_column(UtcDateTime)
    content_hash: Mapped[str] = mapped_column(String(64))
    unread: Mapped[list[Any]] = mapped_column(Json)


class UserUsageRow(Base):
    """What one IAM user used in the read's window (``domain.usage.UserUsage`` as JSON)."""

    __tablename__ = "user_usage"
    __table_args__ = (UniqueConstraint("read_id", "account_id", "user_name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    read_id: Mapped[int] = parent("usage_reads")
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(64))
    content: Mapped[dict[str, Any]] = mapped_column(Json)
