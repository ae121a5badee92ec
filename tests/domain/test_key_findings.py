"""Key attribution and the key report's renderings: classes, masking, SARIF 2.1.0, spec [scan]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domain.errors import SpecError
from domain.key_attribution import (
    Classification,
    KeyOwner,
    OrgView,
    ScanProblem,
    account_of_key_id,
    attribute,
)
from domain.key_findings import IgnoredHit, KeyHit
from domain.key_report import render_csv, render_json, render_sarif
from domain.keys import mask_key_id
from domain.spec import parse_spec, scan_paths_of

ORG_KEY = "AKIAQ3EGRDZ5V7WKTJNM"
SECRET_HMAC = "ab" * 32


def _new_format_key(account_id: str) -> str:
    from moto.iam.utils import generate_access_key_id_from_account_id

    return generate_access_key_id_from_account_id(account_id, "AKIA")


def test_account_is_read_from_new_format_key_ids_only() -> None:
    for account in ("111111111111", "000000000002", "987654321098"):
        assert account_of_key_id(_new_format_key(account)) == account
    assert account_of_key_id("AKIAIOSFODNN7EXAMPLE") is None  # older format: no account
    assert account_of_key_id("AKIA") is None


def test_attribute_classifies_and_ties_a_lone_secret_to_its_key() -> None:
    outside = _new_format_key("222222222222")
    stranger = _new_format_key("333333333333")
    hits = [
        KeyHit(ORG_KEY, 3, True, SECRET_HMAC, source="working-tree", location="a.py:3", root="r"),
        KeyHit(None, 1, True, SECRET_HMAC, source="working-tree", location=".env:1", root="r"),
        KeyHit(None, 2, True, "cd" * 32, source="working-tree", location=".env:2", root="r"),
        KeyHit(outside, 4, source="working-tree", location="a.py:4", root="r"),
        KeyHit(stranger, 5, source="working-tree", location="a.py:5", root="r"),
        KeyHit("AKIAQGONEKEY234567AB", 6, source="working-tree", location="a.py:6", root="r"),
    ]
    ignored = [
        IgnoredHit("key-id", "aws-documentation-example", 7, "AKIAIOSFODNN7EXAMPLE", "x", "d:7"),
        # A low-entropy look-alike that is nevertheless an inventory key: promoted.
        IgnoredHit("key-id", "low-entropy", 8, "AKIAQAAAAAKEYZZZZZZZ", "x", "d:8"),
    ]
    latest = {
        ORG_KEY: KeyOwner("111111111111", "deployer", "Active", "workload"),
        "AKIAQAAAAAKEYZZZZZZZ": KeyOwner("111111111111", "odd", "Inactive"),
    }
    earlier = {"AKIAQGONEKEY234567AB": KeyOwner("111111111111", "gone", "Active", snapshot_id=3)}
    org = OrgView(
        accounts=frozenset({"111111111111", "222222222222"}),
        in_scope=frozenset({"111111111111"}),
    )
    found = {f.location: f for f in attribute(hits, ignored, latest, earlier, org)}
    assert found["a.py:3"].classification == Classification.ORG_KEY_ACTIVE
    assert found[".env:1"].key_id == ORG_KEY and found[".env:1"].is_org_key
    assert found[".env:2"].classification == Classification.UNATTRIBUTED
    assert found["a.py:4"].classification == Classification.OUT_OF_SCOPE_ACCOUNT
    assert found["a.py:4"].owner_account_id == "222222222222"
    assert found["a.py:5"].classification == Classification.UNATTRIBUTED
    assert "333333333333" in found["a.py:5"].note
    assert found["a.py:6"].classification == Classification.ORG_KEY_DELETED
    assert found["a.py:6"].owner_user == "gone" and "snapshot 3" in found["a.py:6"].note
    assert found["d:7"].classification == Classification.IGNORED and found["d:7"].key_id is None
    assert found["d:8"].classification == Classification.ORG_KEY_INACTIVE


def _findings():
    hits = [
        KeyHit(ORG_KEY, 3, True, SECRET_HMAC, source="working-tree", location="a b.py:3", root="r"),
        KeyHit(ORG_KEY, 2, source="archive", location="b.zip!conf/x.properties:2", root="r"),
        KeyHit(
            ORG_KEY,
            9,
            source="git-history",
            location="old.py:9",
            root="r",
            commit="c" * 40,
            history_only=True,
        ),
        KeyHit(
            ORG_KEY,
            1,
            source="lambda",
            location="111 / us-east-1 / Lambda function f",
            account_id="111111111111",
            region="us-east-1",
        ),
    ]
    latest = {ORG_KEY: KeyOwner("111111111111", "deployer", "Active", "workload")}
    return attribute(hits, [], latest, {}, OrgView())


def test_every_report_format_masks_the_key_id() -> None:
    findings = _findings()
    for text in (
        render_json(findings, [], [], {"migration": "m"}),
        render_csv(findings),
        render_sarif(findings, {"r": Path("/tmp/r")}),
    ):
        assert ORG_KEY not in text and mask_key_id(ORG_KEY) in text
        assert SECRET_HMAC not in text  # the HMAC stays in the state DB too


def test_sarif_has_the_required_fields_for_code_findings_only() -> None:
    sarif = json.loads(render_sarif(_findings(), {"r": Path("/tmp/r")}, "1.2.3"))
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "iamc" and rules
    assert run["originalUriBaseIds"] == {"ROOT0": {"uri": "file:///tmp/r/"}}
    results = run["results"]
    assert len(results) == 3  # the Lambda finding is not a repository finding
    for result in results:
        assert result["ruleId"] == rules[result["ruleIndex"]]["id"] == "org-key-active"
        assert result["message"]["text"]
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uriBaseId"] == "ROOT0"
        assert location["region"]["startLine"] >= 1
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {"a%20b.py", "b.zip", "old.py"}
    history = next(r for r in results if r["properties"]["historyOnly"])
    assert "cccccccccccc" in history["message"]["text"]


def test_scan_section_of_the_spec(tmp_path: Path) -> None:
    spec = parse_spec({"name": "w", "scan": {"paths": ["repo", "gone"], "aws": False}})
    (tmp_path / "repo").mkdir()
    paths = scan_paths_of(spec, tmp_path / "spec.toml")
    assert [p.label for p in paths] == ["repo", "gone"]
    assert paths[0].problem is None and paths[0].path == (tmp_path / "repo").resolve()
    assert paths[1].problem is not None
    assert "spec.toml: scan.paths[1]: 'gone' does not exist" in paths[1].problem
    assert "\n" not in paths[1].problem
    with pytest.raises(SpecError, match=r"scan\.paths: a path is listed twice"):
        parse_spec({"name": "w", "scan": {"paths": ["a", "a"]}})
    with pytest.raises(SpecError, match=r"scan\.regions"):
        parse_spec({"name": "w", "scan": {"regions": ["mars-1"]}})
    assert parse_spec({"name": "w"}).scan.aws is True


def test_sarif_lists_what_the_scan_could_not_read_as_notifications() -> None:
    problems = [
        ScanProblem("skipped", "git-history", "dump.sql (blob ab12)", "larger than 10 bytes", "r"),
        ScanProblem("failed", "git-history", "git history", "git refused the repository", "r"),
    ]
    sarif = json.loads(render_sarif(_findings(), {"r": Path("/tmp/r")}, "1.2.3", problems))
    (invocation,) = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False  # a failed source: the scan is incomplete
    levels = [(n["level"], n["message"]["text"]) for n in invocation["toolExecutionNotifications"]]
    assert levels == [
        ("warning", "skipped r: dump.sql (blob ab12): larger than 10 bytes"),
        ("error", "failed r: git history: git refused the repository"),
    ]
    complete = json.loads(render_sarif(_findings(), {"r": Path("/tmp/r")}, "1.2.3", problems[:1]))
    assert complete["runs"][0]["invocations"][0]["executionSuccessful"] is True
