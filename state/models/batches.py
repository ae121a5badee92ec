"""Models of the work-pool runs (revisions 0016, 0017): what each child flow run reported, and
the salt a key scan's batch runs share while it runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
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


class KeyScanSaltRow(Base):
    """The salt of a running key scan's HMACs, for its batch runs on the pool's workers.

    Not a found credential: a random per-scan key, so that a secret found by two batches
    gets the same HMAC. The parent writes it right before it sends its batches out and
    deletes it when they are done (``state.key_scans``); ``expires`` bounds a row whose
    parent died before it could. UNLOGGED on PostgreSQL (revision 0017).
    """

    __tablename__ = "key_scan_salts"

    run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    salt: Mapped[bytes] = mapped_column(LargeBinary())
    expires: Mapped[datetime] = mapped_column(UtcDateTime)
