"""Inventory end to end: sandbox up, `iamc inventory`, and the report equals the seed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import boto3

from state import Store

CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}

SPEC = """name = "e2e"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
rate_limits = { iam = 40 }
"""


def write_spec(directory: Path, text: str = SPEC, name: str = "spec.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def report(iamc, spec: Path) -> dict:
    result = iamc("report", "inventory", "-c", str(spec), "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def expected_by_account(manifest: dict) -> dict[str, dict[str, int]]:
    return {
        a["account_id"]: a["counts_by_class"]
        for a in manifest["accounts"]
        if a["status"] == "ACTIVE" and a["users"]
    }


def test_report_counts_equal_what_the_seed_created(iamc, sandbox_process, tmp_path):
    manifest = sandbox_process.control.manifest()
    spec = write_spec(tmp_path)

    result = iamc("inventory", "-c", str(spec))
    assert result.returncode == 0, result.stderr
    assert "36 IAM users" in result.stdout

    data = report(iamc, spec)
    expected = expected_by_account(manifest)
    assert {row["account_id"] for row in data["accounts"]} == set(expected)
    for row in data["accounts"]:
        counts = {c: row[c] for c in ("human", "workload", "unused", "protected") if row[c]}
        assert counts == expected[row["account_id"]], row["account_id"]
        assert row["cis_1_21"] == "FAIL"  # unprotected users remain everywhere
    assert data["totals"]["users"] == sum(sum(c.values()) for c in expected.values())
    suspended = [a["account_id"] for a in manifest["accounts"] if a["status"] == "SUSPENDED"]
    skipped = {f["account_id"] for f in data["findings"] if f["kind"] == "account-not-active"}
    assert skipped == set(suspended) and suspended

    # The verdicts as Security Hub findings: printed, then imported and read back.
    asff = iamc("report", "inventory", "-c", str(spec), "--format", "asff")
    assert asff.returncode == 0, asff.stderr
    printed = json.loads(asff.stdout)
    verdicts = {row["account_id"]: row["cis_1_21"] for row in data["accounts"]}
    assert {f["AwsAccountId"]: f["Compliance"]["Status"] for f in printed} == {
        a: ("PASSED" if v.startswith("PASS") else "FAILED") for a, v in verdicts.items()
    }
    hub = boto3.client("securityhub", endpoint_url=sandbox_process.url, **CREDENTIALS)
    hub.enable_security_hub()
    sent = iamc("report", "inventory", "-c", str(spec), "--format", "asff", "--import")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"imported {len(printed)} of {len(printed)}" in sent.stdout
    stored = hub.get_findings(
        Filters={"GeneratorId": [{"Value": printed[0]["GeneratorId"], "Comparison": "EQUALS"}]}
    )["Findings"]
    assert sorted((f["AwsAccountId"], f["Compliance"]["Status"]) for f in stored) == sorted(
        (f["AwsAccountId"], f["Compliance"]["Status"]) for f in printed
    )
    assert all(f["Description"].startswith("FAIL: ") for f in stored)

    as_csv = iamc("report", "inventory", "-c", str(spec), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["account_id"] for r in rows] == [r["account_id"] for r in data["accounts"]]
    table = iamc("report", "inventory", "-c", str(spec))
    assert "CIS 1.21" in table.stdout and "FAIL" in table.stdout


def test_throttled_iam_is_retried_and_the_inventory_completes(iamc, sandbox_process, tmp_path):
    control = sandbox_process.control
    # Faster than the server allows: the client limiter lets 40/s per account through.
    control.configure(throttle={"iam": 15})
    control.reset_calls()
    try:
        spec = write_spec(tmp_path)
        result = iamc("inventory", "-c", str(spec))
    finally:
        control.configure(throttle={})
    assert result.returncode == 0, result.stderr
    calls = control.calls()
    assert calls["throttled_total"] > 0
    data = report(iamc, spec)
    assert data["totals"]["users"] == 36 and data["totals"]["accounts_unknown"] == 0


def test_bad_input_is_a_clear_error_and_the_state_is_intact(iamc, tmp_path):
    spec = write_spec(tmp_path)
    assert iamc("inventory", "-c", str(spec)).returncode == 0
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration = store.runs.list_runs()[0].migration_id
        before = store.snapshots.latest_snapshot(migration)

    unknown = write_spec(
        tmp_path, SPEC + '[scope]\ninclude_accounts = ["999999999999"]\n', "bad.toml"
    )
    result = iamc("inventory", "-c", str(unknown))
    assert result.returncode == 2
    assert "scope.include_accounts: 999999999999 is not an account" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout

    typo = write_spec(tmp_path, SPEC.replace("[inventory]", "[inventroy]"), "typo.toml")
    result = iamc("inventory", "-c", str(typo))
    assert result.returncode == 2
    assert "typo.toml" in result.stderr and "inventroy: unknown key" in result.stderr

    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        after = store.snapshots.latest_snapshot(migration)
        assert after == before
        assert len(store.snapshots.load_snapshot(after.id)) == 3
        assert store.runs.list_runs()[-1].status == "failed"


def test_an_outage_is_unreachable_and_the_inventory_fails(iamc, sandbox_process, tmp_path):
    """IAM's endpoint refuses connections (a closed port): not access denied, not a success."""
    spec = write_spec(tmp_path, SPEC + "max_attempts = 2\n")
    result = iamc("inventory", "-c", str(spec), AWS_ENDPOINT_URL_IAM="http://127.0.0.1:9")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "inventory incomplete: 3 of 3 in-scope account(s) could not be read" in result.stderr
    active = expected_by_account(sandbox_process.control.manifest())
    for account_id in active:
        assert f"{account_id} (" in result.stderr
    assert result.stderr.count(": unreachable:") == 3
    assert "access-denied" not in result.stderr and "what to do:" in result.stderr
    assert "Traceback" not in result.stderr
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        run = store.runs.list_runs()[-1]
        assert (run.kind, run.status) == ("inventory", "failed")


def test_account_whose_role_cannot_be_assumed_blocks_the_plan(iamc, sandbox_process, tmp_path):
    manifest = sandbox_process.control.manifest()
    victim = next(iter(expected_by_account(manifest)))
    victim_name = next(a["name"] for a in manifest["accounts"] if a["account_id"] == victim)
    iam = sandbox_process.member_iam(victim)
    role = "OrganizationAccountAccessRole"
    for policy in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=role, PolicyArn=policy["PolicyArn"])
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        iam.delete_role_policy(RoleName=role, PolicyName=name)
    iam.delete_role(RoleName=role)

    spec = write_spec(tmp_path)
    result = iamc("inventory", "-c", str(spec))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "1 of 3 in-scope account(s) could not be read" in result.stderr
    assert f"{victim} ({victim_name}): cannot-assume-role" in result.stderr
    assert "what to do: make sure the member role exists" in result.stderr
    # The accounts that answered are stored and reported.
    data = report(iamc, spec)
    rows = {r["account_id"]: r for r in data["accounts"]}
    assert rows[victim]["cis_1_21"] == "UNKNOWN"
    assert f"cannot assume role {role} in account {victim}" in rows[victim]["error"]
    assert "AccessDenied" in rows[victim]["error"]
    kinds = {(f["kind"], f["account_id"]) for f in data["findings"]}
    assert ("cannot-assume-role", victim) in kinds
    others = [r for a, r in rows.items() if a != victim]
    assert all(r["cis_1_21"] == "FAIL" and r["users"] == 12 for r in others)

    mapped = iamc("map", "-c", str(spec))
    assert mapped.returncode == 0, mapped.stderr
    assert f"not inventoried {victim}" in mapped.stdout

    planned = iamc("plan", "-c", str(spec), "--out", str(tmp_path / "plan"))
    assert planned.returncode == 2, planned.stdout + planned.stderr
    markdown = (tmp_path / "plan" / "plan.md").read_text()
    summary = markdown[markdown.index("## Summary") : markdown.index("## Risks")]
    assert "Accounts not inventoried" in summary and victim in summary
    assert victim_name in summary and "cannot-assume-role" in summary
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    blocking = [f for f in plan["findings"] if f["severity"] == "blocking"]
    assert [(f["kind"], f["account_id"]) for f in blocking] == [("account-not-inventoried", victim)]
    approve = iamc(
        "approve",
        str(plan["plan_id"]),
        "-c",
        str(spec),
        "--by",
        "cab",
        "--ticket",
        "CHG-1",
        "--hash",
        plan["hash"][:12],
        "--stage",
        "provision",
    )
    assert approve.returncode == 2 and "blocking error" in approve.stderr
