"""The declarative base of the state DB's models, with the column types they share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names on every backend, so later migrations can name what they
# alter (SQLite batch mode needs names; PostgreSQL would otherwise invent its own).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in as UTC and always comes out timezone-aware UTC.

    SQLite has no timezone type and returns naive values; PostgreSQL returns the session's
    zone. A naive value handed to us is taken to be UTC already (boto3 returns aware ones).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite would store the "+00:00" suffix as text and compare strings; keep it naive UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON null and SQL NULL differ; store a missing document as SQL NULL so "IS NULL" finds it.
Json = JSON(none_as_null=True)
# Keys are BIGINT on PostgreSQL (snapshots of many accounts add up) but INTEGER on SQLite,
# where only "INTEGER PRIMARY KEY" is the autoincrementing rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def parent(table: str, *, nullable: bool = False) -> Mapped[Any]:
    """A foreign key to ``table``'s id, indexed, whose rows go when their parent does."""
    return mapped_column(
        Id, ForeignKey(f"{table}.id", ondelete="CASCADE"), nullable=nullable, index=True
    )
