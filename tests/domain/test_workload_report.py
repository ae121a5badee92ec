"""The workloads report (table row, JSON, CSV) shows every field with no key id whole."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from domain.keys import mask_key_ids_in
from domain.workload_report import CSV_COLUMNS, render_csv, render_json, table_row
from domain.workloads import Confidence, KeyUsage, Placement, Runtime

WHOLE = re.compile(r"AKIA[A-Z0-9]{16}")
KEY = "AKIAEXAMPLEWORKLOAD1"
OTHER = "AKIAEXAMPLEWORKLOAD2"


def _placement() -> Placement:
    used = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    return Placement(
        "111122223333",
        "report-uploader",
        Runtime.LAMBDA,
        Confidence.HIGH,
        evidence=[
            "exec-env/AWS_Lambda_python3.12 on 14 of 14 calls",
            f"key {KEY} written down in lambda:acme-report-uploader",  # a careless line
        ],
        keys=[
            KeyUsage(
                KEY,
                "Active",
                last_used=used,
                events=14,
                first_seen=datetime(2026, 10, 1, tzinfo=UTC),
                last_seen=used,
                user_agents=["exec-env/AWS_Lambda_python3.12"],
                source_ips=["3.5.140.2"],
                calls=["s3:PutObject", "iam:ListUsers"],
                written_down=[f"lambda:acme-report-uploader (AWS_ACCESS_KEY_ID={KEY})"],
            ),
            KeyUsage(OTHER, "Inactive"),
        ],
        owner="reporting-team",
        role_first_used=datetime(2026, 11, 20, tzinfo=UTC),
    )


def test_mask_key_ids_in_masks_whole_key_ids_only():
    assert mask_key_ids_in(f"id={KEY}, AKIA…WXYZ, XAKIAEXAMPLEWORKLOAD1") == (
        "id=AKIA…OAD1, AKIA…WXYZ, XAKIAEXAMPLEWORKLOAD1"
    )


def test_table_row_sums_up_a_user():
    row = table_row(_placement())
    assert row["Runtime"] == "lambda" and row["Confidence"] == "high"
    assert row["Keys"] == "AKIA…OAD1 Active\nAKIA…OAD2 Inactive"
    assert row["Key last used"] == "2026-11-03"
    assert row["Role first used"] == "2026-11-20"
    assert row["Evidence"] == "exec-env/AWS_Lambda_python3.12 on 14 of 14 calls"
    assert row["Written down"] == "1"


def test_json_has_every_field_the_run_and_accounts_not_read():
    meta = {"migration": "m", "run_id": 7, "recorded": "x", "accounts_failed": {"4": "denied"}}
    text = render_json([_placement()], meta)
    assert not WHOLE.search(text)
    data = json.loads(text)
    assert data["run_id"] == 7 and data["accounts_failed"] == {"4": "denied"}
    placed = data["placements"][0]
    assert placed["runtime"] == "lambda" and placed["owner"] == "reporting-team"
    assert placed["keys"][0]["access_key_id"] == "AKIA…OAD1"
    assert placed["keys"][0]["events"] == 14
    assert placed["evidence"][1] == "key AKIA…OAD1 written down in lambda:acme-report-uploader"
    assert placed["role_first_used"] == "2026-11-20T00:00:00+00:00"


def test_csv_has_a_row_per_key_with_every_column():
    text = render_csv([_placement()])
    assert not WHOLE.search(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == CSV_COLUMNS
    assert [(r["key"], r["status"]) for r in rows] == [
        ("AKIA…OAD1", "Active"),
        ("AKIA…OAD2", "Inactive"),
    ]
    first = rows[0]
    assert first["events"] == "14" and first["calls"] == "s3:PutObject; iam:ListUsers"
    assert first["written_down"] == "lambda:acme-report-uploader (AWS_ACCESS_KEY_ID=AKIA…OAD1)"
    assert first["settled_by"] == "inferred" and first["owner"] == "reporting-team"


def test_a_user_without_keys_has_one_row():
    bare = Placement("1", "u", Runtime.UNKNOWN, Confidence.NONE)
    rows = list(csv.DictReader(io.StringIO(render_csv([bare]))))
    assert [(r["user"], r["key"], r["events"]) for r in rows] == [("u", "", "0")]
    assert table_row(bare)["Keys"] == "-"
