"""Models of the workloads step (revision 0011): one row per placement a workloads run made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from state.models.base import Base, Id, Json, UtcDateTime, parent


class PlacementRow(Base):
    """Where one workload user's keys are used from, as one workloads run saw it.

    ``content`` is the ``domain.workloads.Placement`` as JSON (key ids whole: this is the state
    DB); ``role_first_used`` is a column so the earliest use any run saw is one query.
    """

    __tablename__ = "workload_placements"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = parent("migrations")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[str] = mapped_column(String(12))
    user_name: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(32))
    confidence: Mapped[str] = mapped_column(String(16))
    role_first_used: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    recorded: Mapped[datetime] = mapped_column(UtcDateTime)
    content: Mapped[dict[str, Any]] = mapped_column(Json)
