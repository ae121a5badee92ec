"""Models of the notices' mail journal (revision 0014): one row per notice content and recipient."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from state.models.base import Base, Id, UtcDateTime, parent


class NoticeMailRow(Base):
    """One notice's content mailed (or being mailed) to one recipient.

    Unique per migration, notice, recipient and ``message_hash`` (``domain.notice_mail``'s
    digest of what the person reads): inserting the intent is how a run claims the delivery,
    so two runs never both send it. ``message_id`` is the Message-ID header of the last
    attempt: what to look for in the mail server's log when the outcome is unknown.
    """

    __tablename__ = "notice_mails"
    __table_args__ = (UniqueConstraint("migration_id", "notice", "recipient", "message_hash"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    migration_id: Mapped[int] = parent("migrations")
    plan_id: Mapped[int] = parent("plans")
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    notice: Mapped[str] = mapped_column(String(128))
    recipient: Mapped[str] = mapped_column(String(320))
    message_hash: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
