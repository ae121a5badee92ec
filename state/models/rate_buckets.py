"""Model of the shared rate limit (revision 0015): one token bucket per API family and account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from state.models.base import Base, UtcDateTime


class RateBucketRow(Base):
    """How many AWS calls one (API family, account) may make now, for every process at once.

    ``available`` is the bucket's level at ``stamp`` (the database's clock), after the last
    call took its token; below zero it is what calls already promised a slot are owed
    (``state.rate_buckets``).
    """

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    available: Mapped[float] = mapped_column(Float)
    stamp: Mapped[datetime] = mapped_column(UtcDateTime)
