"""Alembic environment: runs revisions on the connection the state store hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from state.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL for ``alembic upgrade --sql`` without a database."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run revisions on the given connection, or on one to ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Developer use (``alembic -x`` free): a URL in the config, e.g. for autogenerate.
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as own_connection:
        _run(own_connection)
        own_connection.commit()


def _run(connection: object) -> None:
    # Batch mode lets later revisions alter SQLite tables (SQLite's ALTER TABLE is limited).
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
