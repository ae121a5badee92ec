"""Every credential kind of the domain table has its AWS calls, inventory reader and table."""

from __future__ import annotations

from domain.credentials import CREDENTIAL_KINDS
from domain.teardown import TEARDOWN
from state.models import CREDENTIAL_TABLES
from tasks import iam_user_credentials, user_teardown
from tasks.credentials import CALLS


def test_each_kind_is_found_by_its_name_on_every_floor():
    names = {kind.name for kind in CREDENTIAL_KINDS}
    assert set(CALLS) == names
    assert set(iam_user_credentials.READERS) == names
    assert set(CREDENTIAL_TABLES) == {kind.name for kind in CREDENTIAL_KINDS if not kind.flag}


def test_each_teardown_row_has_its_calls():
    assert set(user_teardown._ROWS) == {step.kind for step in TEARDOWN}


def test_each_table_has_its_records_fields_as_columns():
    for kind in CREDENTIAL_KINDS:
        if not kind.flag:
            columns = set(CREDENTIAL_TABLES[kind.name].__table__.c.keys())
            assert set(kind.record_fields) | {"id", "user_id", "position"} == columns
