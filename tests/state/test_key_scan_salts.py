"""A spread key scan's salt in the state DB: there while the scan runs, gone when it ends."""

from __future__ import annotations

import secrets
import traceback
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from domain.errors import StateError
from state import Store

HOUR = timedelta(hours=1)


def _scan_run(store: Store) -> int:
    migration_id = store.migrations.ensure_migration("wave-1", {"name": "wave-1"})
    return store.runs.start_run(migration_id, "key-scan")


def test_a_salt_is_handed_out_only_while_its_scan_holds_it(store_url: str) -> None:
    with Store.open(store_url) as store:
        first, second = _scan_run(store), _scan_run(store)
        salt, other = secrets.token_bytes(32), secrets.token_bytes(32)
        store.scans.hold_salt(first, salt, HOUR)
        store.scans.hold_salt(second, other, HOUR)
        assert store.scans.scan_salt(first) == salt
        assert store.scans.scan_salt(second) == other
        store.scans.drop_salt(first)
        assert store.scans.scan_salt(first) is None
        assert store.scans.scan_salt(second) == other


def test_a_new_scan_sweeps_the_salts_scans_left_behind(store_url: str) -> None:
    with Store.open(store_url) as store:
        finished, expired, running, new = (_scan_run(store) for _ in range(4))
        for run in (finished, running):
            store.scans.hold_salt(run, secrets.token_bytes(32), HOUR)
        store.scans.hold_salt(expired, secrets.token_bytes(32), -HOUR)
        # A parent killed outright ran no finally; its run finished all the same (or not).
        store.runs.finish_run(finished, "failed", error="killed")
        assert store.scans.scan_salt(expired) is None  # handed out no more, even before

        store.scans.hold_salt(new, secrets.token_bytes(32), HOUR)

        engine = create_engine(store_url)
        try:
            with engine.connect() as connection:
                held = connection.execute(text("SELECT run_id FROM key_scan_salts")).scalars()
                assert sorted(held) == sorted([running, new])
                if engine.dialect.name == "postgresql":
                    # Never in the WAL, so in no WAL archive or replica (revision 0017).
                    persistence = connection.execute(
                        text("SELECT relpersistence FROM pg_class WHERE relname = 'key_scan_salts'")
                    ).scalar()
                    assert persistence == "u"
        finally:
            engine.dispose()


def test_a_salt_that_cannot_be_kept_is_in_no_error_or_traceback(store_url: str) -> None:
    with Store.open(store_url) as store:
        salt = secrets.token_bytes(32)
        # No such run: the insert fails, and the driver's error prints its parameters.
        with pytest.raises(StateError) as caught:
            store.scans.hold_salt(424242, salt, HOUR)
    told = "".join(traceback.format_exception(caught.value))
    assert "key_scan_salts" in told or "FOREIGN KEY" in told.upper()
    for form in (salt.hex(), repr(salt)[2:-1], repr(salt[:8])[2:-1]):
        assert form not in told
