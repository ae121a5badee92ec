"""Identity mapping end to end: sandbox up, `iamc inventory`, `iamc map`, the IdP team's CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

SPEC = """name = "e2e-mapping"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
rate_limits = { iam = 40 }
[mapping]
rules = ["override", "tag:email", "username", "email-localpart"]
"""


def same_person_in_two_accounts(sandbox_process, manifest: dict) -> tuple[str, list[str]]:
    """A matchable human with IAM users in two accounts (made so if the seed has none)."""
    active = [a for a in manifest["accounts"] if a["status"] == "ACTIVE" and a["users"]]
    humans: dict[str, list[str]] = {}
    for account in active:
        for user in account["users"]:
            if user["expected_class"] == "human" and user["email"] and not user["note"]:
                humans.setdefault(user["name"], []).append(account["account_id"])
    for name, accounts in sorted(humans.items()):
        if len(accounts) > 1:
            return name, accounts
    name, (first, *_) = sorted(humans.items())[0]
    second = next(a["account_id"] for a in active if a["account_id"] != first)
    iam = sandbox_process.member_iam(second)
    iam.create_user(UserName=name, Tags=[{"Key": "email", "Value": f"{name}@example.com"}])
    iam.create_login_profile(UserName=name, Password="Sandbox-Only-1!x")
    return name, [first, second]


def test_map_reports_unmatched_and_ambiguous_and_one_identity_per_person(
    iamc, sandbox_process, tmp_path: Path
):
    manifest = sandbox_process.control.manifest()
    person, person_accounts = same_person_in_two_accounts(sandbox_process, manifest)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)

    result = iamc("inventory", "-c", str(spec))
    assert result.returncode == 0, result.stderr
    result = iamc("map", "-c", str(spec))
    assert result.returncode == 0, result.stderr
    assert "1 unmatched" in result.stdout and "1 ambiguous" in result.stdout

    full = iamc("report", "mapping", "-c", str(spec), "--format", "json")
    assert full.returncode == 0, full.stderr
    data = json.loads(full.stdout)
    users = {(u["account_id"], u["iam_user"]): u for u in data["users"]}
    first = manifest["accounts"][0]["account_id"]

    (victor,) = manifest["unmatched_humans"]
    assert users[(first, victor)]["status"] == "unmatched"
    assert users[(first, victor)]["email_tag"] == f"{victor}@example.com"
    (alex, alex_identities) = next(iter(manifest["ambiguous_humans"].items()))
    assert users[(first, alex)]["status"] == "ambiguous"
    assert users[(first, alex)]["rule"] == "email-localpart"
    assert sorted(users[(first, alex)]["candidates"]) == sorted(alex_identities)

    identity_ids = {users[(a, person)]["identity_user_id"] for a in person_accounts}
    expected_id = next(
        u["user_id"]
        for u in manifest["identity_users"]
        if u["user_name"] == f"{person}@example.com"
    )
    assert identity_ids == {expected_id}
    assert all(users[(a, person)]["rule"] == "tag:email" for a in person_accounts)
    workloads = {f["subject"] for f in data["findings"] if f["kind"] == "workload-needs-role"}
    seeded_workloads = {
        u["name"]
        for a in manifest["accounts"]
        for u in a["users"]
        if u["expected_class"] == "workload"
    }
    assert workloads == seeded_workloads

    as_csv = iamc("report", "mapping", "-c", str(spec), "--unmatched", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == [
        "account_id",
        "iam_user",
        "status",
        "identity_user",
        "rule",
        "candidates",
        "email_tag",
        "reason",
    ]
    not_matched = {key for key, u in users.items() if u["status"] != "matched"}
    assert (
        {(r["account_id"], r["iam_user"]) for r in rows}
        == not_matched
        == {
            (first, victor),
            (first, alex),
        }
    )
    alex_row = next(r for r in rows if r["iam_user"] == alex)
    assert sorted(alex_row["candidates"].split(";")) == sorted(alex_identities)

    # A bad overrides CSV: exit 2 naming file:line and the column; the state DB is unchanged.
    overrides = tmp_path / "overrides.csv"
    overrides.write_text(
        f"account_id,iam_user,idp_user\n{first[:-1]},{alex},{alex_identities[0]}\n"
    )
    bad_spec = tmp_path / "bad.toml"
    bad_spec.write_text(SPEC + 'overrides = "overrides.csv"\n')
    db_before = (tmp_path / "state.db").read_bytes()
    result = iamc("map", "-c", str(bad_spec))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{overrides}:2 (field 'account_id')" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr + result.stdout
    assert (tmp_path / "state.db").read_bytes() == db_before
