"""The state DB schema: Alembic revisions agree with the models, and no column holds a secret."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from domain.errors import StateError
from state import Store
from state.engine import alembic_config, code_head, migrations_dir
from state.models import Base

# These test the migrations: no schema copied in their place (tests/conftest.py).
pytestmark = pytest.mark.real_migrations


# Facts about a password (whether one is set, when used) are fine; the password is not.
_ALLOWED_PASSWORD_COLUMNS = {"password_enabled", "password_last_used", "password_last_changed"}
_SECRET_LIKE = re.compile(r"secret|password|passwd|private|seed|token|credential_value", re.I)


def test_one_head_with_readable_ids() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    revisions = [revision.revision for revision in script.walk_revisions()]
    assert all(re.fullmatch(r"\d{4}", revision) for revision in revisions)
    # The fast path that skips Alembic when a DB is at head reads the same head from text.
    assert code_head() == script.get_current_head()


def test_a_db_at_head_opens_without_importing_alembic(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    Store.open(url).close()  # creates and upgrades (imports Alembic)
    probe = (
        "import sys; from state import Store; "
        f"Store.open({url!r}).close(); "
        "print('alembic' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_migrations_package_is_found_without_alembic_ini() -> None:
    directory = migrations_dir()
    assert (directory / "env.py").is_file()
    assert (directory / "versions" / "0001_initial.py").is_file()
    assert not (directory / "alembic.ini").exists()


def test_upgrade_from_empty_creates_every_table(store_url: str) -> None:
    Store.open(store_url).close()
    engine = create_engine(store_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_models_match_migrations(store_url: str) -> None:
    Store.open(store_url).close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_no_column_can_hold_a_secret() -> None:
    offenders = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if _SECRET_LIKE.search(column.name) and column.name not in _ALLOWED_PASSWORD_COLUMNS
    ]
    assert offenders == []
    users = Base.metadata.tables["iam_users"]
    # The allowed password columns are a flag and dates, never text.
    assert users.c.password_enabled.type.python_type is bool
    for name in ("password_last_used", "password_last_changed"):
        assert users.c[name].type.python_type.__name__ == "datetime"


def test_newer_revision_is_refused_and_data_kept(store_url: str) -> None:
    with Store.open(store_url) as store:
        migration_id = store.migrations.ensure_migration("wave-1", {"name": "wave-1"})
        store.runs.start_run(migration_id, "inventory")
    engine = create_engine(store_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))

        with pytest.raises(StateError, match=r"revision 9999, newer than this iamc knows"):
            Store.open(store_url)

        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
                "9999"
            )
            assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 1
            assert connection.execute(text("SELECT name FROM migrations")).scalar() == "wave-1"
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
