"""`iamc db upgrade` and `iamc db current`, and the refusal of a SQLite state on a work pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.distribution import WORK_POOL_ENV
from domain.errors import SpecError
from engine.migration import Migration, require_shared_state
from state.engine import code_head

# These test the migrations: no schema copied in their place (tests/conftest.py).
pytestmark = pytest.mark.real_migrations


ROOT = Path(__file__).resolve().parents[2]


def iamc(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", WORK_POOL_ENV))}
    return subprocess.run(
        [sys.executable, "-m", "iamc.cli", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_upgrade_once_then_at_head(store_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "wave-1"\nstate = "{store_url}"\n')
    head = code_head()

    first = iamc("db", "upgrade", "-c", "spec.toml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"upgraded from empty to {head}" in first.stdout
    again = iamc("db", "upgrade", "-c", "spec.toml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"already at revision {head}" in again.stdout
    current = iamc("db", "current", "-c", "spec.toml", cwd=tmp_path)
    assert current.returncode == 0 and f"at revision {head}, this iamc's" in current.stdout


def test_current_of_an_empty_db_says_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    current = iamc("db", "current", "-c", "spec.toml", cwd=tmp_path)
    assert current.returncode == 1
    assert (
        "at revision empty" in current.stdout and "iamc db upgrade -c spec.toml" in current.stdout
    )


def test_a_work_pool_refuses_a_sqlite_state_in_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "wave-1"\n\nstate = "sqlite:///state.db"\n')
    with pytest.raises(SpecError) as refused:
        require_shared_state(spec, "sqlite:///state.db", "iam-pool")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{spec}:3: invalid migration spec: state: ")
    assert "several workers on several machines" in message
    assert "a SQLite file is one machine's" in message
    assert 'set state = "postgresql+psycopg://' in message
    assert f"iamc db upgrade -c {spec}" in message
    # Outside a work pool anything goes; on one, PostgreSQL does.
    require_shared_state(spec, "sqlite:///state.db", None)
    require_shared_state(spec, "postgresql+psycopg://u:secret@db/iamc", "iam-pool")


def test_a_flow_on_a_work_pool_refuses_before_opening_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "wave-1"\nstate = "sqlite:///state.db"\n')
    monkeypatch.setenv(WORK_POOL_ENV, "iam-pool")
    with pytest.raises(SpecError, match="can't serve work pool 'iam-pool'"), Migration.open(spec):
        pass
    assert not (tmp_path / "state.db").exists()
    # The CLI maps it to one line and the spec error's exit code.
    refused = iamc("runs", "-c", "spec.toml", cwd=tmp_path, **{WORK_POOL_ENV: "iam-pool"})
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "a SQLite file is one machine's" in refused.stderr
    assert not (tmp_path / "state.db").exists()
