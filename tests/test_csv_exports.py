"""Every CSV export goes through domain.csv_export: no cell reaches a spreadsheet as a formula."""

from __future__ import annotations

import ast
import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain import csv_export, inventory_report, key_report
from domain.csv_export import FORMULA_TRIGGERS, neutralise, render_csv
from domain.key_attribution import KeyFinding
from domain.notices import Notice, NoticeContext, write_notices
from domain.plan import Plan
from domain.plan_render import render_assignments_csv
from domain.records import Account, AccountInventory, MatchStatus, User, UserClass, UserMapping
from iamc.views.mapping import mapping_csv, mapping_user_rows
from state.identity import MappingInfo

ROOT = Path(__file__).resolve().parents[1]
# Every package that ships (as tests/test_layers.py lists them); tests may write input files.
PACKAGES = ("domain", "state", "tasks", "flows", "iamc", "sandbox", "bench", "migrations")
# Names a scanned file, an IAM user, an account or a tag value may carry (IAM user names
# may hold = + @ -); each is a formula, or becomes one after a tab or carriage return.
PAYLOADS = ['=HYPERLINK("http://x")', "@SUM(1)", "+1", "-1+1", "\t=1", "\r=1"]


def cells(text: str) -> list[list[str]]:
    """The data rows of a CSV document, as a spreadsheet's import reads them."""
    return list(csv.reader(io.StringIO(text, newline="")))[1:]


def assert_inert(text: str, payload: str) -> None:
    rows = cells(text)
    assert rows, text
    live = [cell for row in rows for cell in row if cell.startswith(FORMULA_TRIGGERS)]
    assert live == [], f"live formula cells: {live!r}"
    # The value is carried, quoted, not dropped or mangled.
    assert any(cell.startswith("'" + payload) for row in rows for cell in row), rows


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_a_cell_that_begins_with_a_formula_trigger_gets_a_quote(payload: str):
    assert neutralise(payload) == "'" + payload
    assert neutralise("jane.doe") == "jane.doe"
    assert neutralise("a=b") == "a=b"  # only the first character makes a formula


def test_numbers_stay_numbers_and_other_values_are_neutralised_as_their_text():
    text = render_csv(["n", "x", "none", "day"], [{"n": -5, "x": -1.5, "none": None, "day": "-"}])
    assert text == "n,x,none,day\n-5,-1.5,,'-\n"
    assert neutralise(date(2026, 1, 2)) == "2026-01-02"
    assert neutralise(True) is True


def test_an_unknown_column_is_an_error_unless_ignored():
    with pytest.raises(ValueError):
        render_csv(["a"], [{"a": 1, "b": 2}])
    assert render_csv(["a"], [{"a": 1, "b": "=2"}], extra="ignore") == "a\n1\n"


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_keys_csv_location_and_owner_are_inert(payload: str):
    finding = KeyFinding(
        classification="unattributed",
        source="file",
        location=f"{payload}:3",
        line=3,
        root=payload,
        owner_user=payload,
        note=payload,
    )
    assert_inert(key_report.render_csv([finding]), payload)


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_inventory_csv_account_name_is_inert(payload: str):
    user = User(name="jane", user_id="AIDAJANE", arn="arn:jane", user_class=UserClass.HUMAN)
    inventories = [
        AccountInventory(Account("111111111111", payload), [user]),
        AccountInventory(Account("222222222222", "beta"), error=payload),
    ]
    rows = inventory_report.inventory_rows(inventories, datetime(2026, 1, 1, tzinfo=UTC))
    assert_inert(inventory_report.render_csv(rows), payload)


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_plan_assignments_csv_is_inert(payload: str):
    assignment = {
        "account_id": "111111111111",
        "permission_set_name": "ReadOnlyAccess",
        "principal_type": "USER",
        "principal_id": "u-1",
        "principal_name": payload,
        "reason": f"{payload} in 111111111111",
    }
    plan = Plan("m", 1, 2, {}, [], [], [], [assignment], [], [])
    assert_inert(render_assignments_csv(plan), payload)


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_mapping_csv_user_tag_and_candidates_are_inert(payload: str):
    mapping = MappingInfo(
        id=1,
        run_id=1,
        snapshot_id=1,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        identity_users=[],
        identity_groups=[],
        user_mappings=[
            UserMapping("111111111111", payload, MatchStatus.AMBIGUOUS, candidates=[payload, "x"])
        ],
        group_mappings=[],
    )
    tags = {("111111111111", payload): {"email": payload}}
    rows = mapping_user_rows(mapping, tags, ["email"])
    assert_inert(mapping_csv(rows), payload)


@pytest.mark.parametrize("payload", PAYLOADS, ids=repr)
def test_notices_csv_is_inert(payload: str, tmp_path: Path):
    # The name and e-mail head the .eml too (no CR allowed there); the CSV is what is tested.
    notice = Notice(
        user_name=payload,
        display_name=payload.replace("\r", ""),
        email="jane@example.com",
        accounts={"111111111111": ["ReadOnlyAccess"]},
        account_names={"111111111111": payload},
        old_users=[("111111111111", payload)],
    )
    ctx = NoticeContext("m", payload, date(2026, 1, 8), date(2026, 1, 22), "iam@example.com")
    write_notices([notice], ctx, tmp_path, date(2026, 1, 1))
    with (tmp_path / "notices.csv").open(encoding="utf-8", newline="") as written:
        assert_inert(written.read(), payload)


# --- no export can bypass the one writer -------------------------------------------------

_WRITERS = {"writer", "DictWriter"}
ONE_WRITER = Path(csv_export.__file__).resolve()


def csv_writer_uses(path: Path) -> list[int]:
    """Lines of ``path`` that name ``csv.writer``/``csv.DictWriter`` or import them from csv."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in _WRITERS:
            named = isinstance(node.value, ast.Name) and node.value.id == "csv"
        elif isinstance(node, ast.ImportFrom) and node.module == "csv":
            named = any(alias.name in _WRITERS for alias in node.names)
        else:
            named = False
        if named:
            found.append(node.lineno)
    return found


def test_no_module_writes_csv_but_the_one_writer():
    bypasses = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.resolve() != ONE_WRITER
        for line in csv_writer_uses(path)
    ]
    assert bypasses == [], f"write CSV through domain.csv_export.render_csv: {bypasses}"
    assert csv_writer_uses(ONE_WRITER), "the check no longer sees the one writer's own call"


def test_the_check_sees_a_direct_writer(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text(
        "import csv\nfrom csv import DictWriter\n\ndef f(out):\n    return csv.writer(out)\n"
    )
    assert csv_writer_uses(module) == [2, 5]


def test_a_carriage_return_inside_a_cell_keeps_the_row_whole():
    text = render_csv(["a", "b"], [{"a": "x\ry", "b": 1}, {"a": "z", "b": 2}])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["a", "b"],
        ["x\ry", "1"],
        ["z", "2"],
    ]
