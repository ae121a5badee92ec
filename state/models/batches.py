"""Models of the work-pool runs (revision 0016): what each account's child flow run reported."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from state.models.base import Base, Id, Json, UtcDateTime


class AccountResultRow(Base):
    """One account's result of a batch run on a worker, for the parent flow run to gather.

    ``work`` names the parent's piece of work (``apply:RUN:STAGE``, ``inventory:SNAPSHOT``);
    a batch run re-dispatched after its worker died writes over its accounts' rows.
    """

    __tablename__ = "account_results"
    __table_args__ = (UniqueConstraint("work", "account_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    work: Mapped[str] = mapped_column(String(120), index=True)
    account_id: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
