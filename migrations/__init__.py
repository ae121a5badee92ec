"""Alembic revisions of the state DB; ``state.engine`` configures Alembic in code to run them."""
