"""A key scan unit's outcome goes through JSON (a batch run's report) and comes back equal."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from domain.key_findings import KeyHit
from scanner.key_detection import KeyDetector
from state.key_scans import ScanUnit
from tasks.key_scan import ScanOutcome, scan_code_path, unscanned_account, unscanned_path

KEY = "AKIAQ3EGRDZ5V7WKTJNM"  # made up
SECRET = "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"  # made up


def _through_json(outcome: ScanOutcome) -> ScanOutcome:
    return ScanOutcome.from_dict(json.loads(json.dumps(outcome.to_dict())))


def test_a_code_outcome_comes_back_equal_through_json(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(
        f'KEY = "{KEY}"\nSECRET = "{SECRET}"\nDOC = "AKIAIOSFODNN7EXAMPLE"\n'
    )
    (code / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    with zipfile.ZipFile(code / "bundle.zip", "w") as archive:
        archive.writestr("inner/.env", f"aws_secret_access_key={SECRET}\n")
    outcome = scan_code_path("code", code, KeyDetector(), history=False)
    # Every part of the record holds something, so each one's round trip is checked.
    assert outcome.result.hits and outcome.result.ignored and outcome.result.skipped
    assert outcome.units and outcome.problems and outcome.result.stats.files == 3
    outcome.calls, outcome.failed = {"lambda": 2}, "made up: to see it come back"

    back = _through_json(outcome)

    assert back == outcome
    assert all(isinstance(hit, KeyHit) for hit in back.result.hits)
    assert {hit.secret_hash for hit in back.result.hits} == {
        hit.secret_hash for hit in outcome.result.hits
    }


def test_units_nobody_reported_are_failed_with_the_reason() -> None:
    account = unscanned_account("111111111111", ["us-east-1", "eu-west-1"], "its batch died")
    assert account.failed == "its batch died" and _through_json(account) == account
    assert {u.status for u in account.units} == {"failed"}
    assert ScanUnit("aws:111111111111:lambda:eu-west-1", "failed", "its batch died") in (
        account.units
    )
    assert [(p.kind, p.account_id) for p in account.problems] == [("failed", "111111111111")]

    path = unscanned_path("code", "its batch died", history=True)
    assert path.failed == "its batch died" and _through_json(path) == path
    assert [(u.unit, u.status) for u in path.units] == [
        ("code:code", "failed"),
        ("code-history:code", "failed"),
    ]
    assert [u.unit for u in unscanned_path("code", "x", history=False).units] == ["code:code"]
