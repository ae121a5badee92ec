"""Workloads end to end: a key signed from Lambda, `iamc workloads` places it, the report reads it.

`iamc inventory`, then `iamc workloads --format json` places the key in Lambda (high
confidence); `iamc report workloads` prints the same placements (JSON, CSV, table) without
running anything; with one account's member role gone, `iamc workloads` exits 4 naming it and
still prints what it read. No key id appears whole, nor a secret, in any output.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess

import boto3
import pytest
from botocore.config import Config

from domain.keys import mask_key_id
from domain.workload_report import CSV_COLUMNS

pytestmark = pytest.mark.e2e

SANDBOX_SIZE = (3, 3)  # accounts, IAM users each: small, the workloads step is under test
WHOLE_KEY = re.compile(r"AKIA[A-Z0-9]{16}")
ROLE = "OrganizationAccountAccessRole"
USER = "wl-report-uploader"


def _sign_as_lambda(url: str, key: dict, times: int) -> None:
    client = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(user_agent_extra="exec-env/AWS_Lambda_python3.12"),
    )
    for _ in range(times):
        client.list_users()


def _remove_role(iam) -> None:
    for policy in iam.list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=ROLE, PolicyArn=policy["PolicyArn"])
    for name in iam.list_role_policies(RoleName=ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=ROLE, PolicyName=name)
    iam.delete_role(RoleName=ROLE)


def test_a_lambda_key_is_placed_reported_and_an_unread_account_exits_4(
    iamc, sandbox_process, tmp_path
):
    manifest = sandbox_process.control.manifest()
    first, second = [a["account_id"] for a in manifest["accounts"] if a["status"] == "ACTIVE"][:2]
    keys = {}
    for account in (first, second):
        iam = sandbox_process.member_iam(account)
        iam.create_user(UserName=USER)
        keys[account] = iam.create_access_key(UserName=USER)["AccessKey"]
    _sign_as_lambda(sandbox_process.url, keys[first], 3)
    secrets = {k["SecretAccessKey"] for k in keys.values()}
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "e2e-workloads"\nstate = "sqlite:///state.db"\n'
        'protected_users = ["breakglass-*"]\n'
        "[aws]\nrate_limits = { iam = 1000, cloudtrail = 1000 }\n"
    )
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        result = iamc(*args)
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode == code, (args, result.stdout, result.stderr[-3000:])
        return result

    run("inventory", "-c", str(spec))
    placed = run("workloads", "-c", str(spec), "--format", "json")
    data = json.loads(placed.stdout)  # stdout is the JSON alone; the status went to stderr
    assert "next: iamc plan -c" in placed.stderr
    assert data["accounts_failed"] == {} and isinstance(data["run_id"], int)
    by_user = {(p["account_id"], p["user"]): p for p in data["placements"]}
    lam = by_user[(first, USER)]
    assert (lam["runtime"], lam["confidence"]) == ("lambda", "high"), lam["evidence"]
    assert lam["evidence"][0].startswith("exec-env/AWS_Lambda_python3.12 on 3 of 3")
    assert lam["keys"][0]["access_key_id"] == mask_key_id(keys[first]["AccessKeyId"])
    assert lam["keys"][0]["events"] == 3 and lam["non_interactive"] is True
    assert by_user[(second, USER)]["runtime"] == "unknown"

    # The report reads what is stored: the same document, no new run.
    stored = json.loads(run("report", "workloads", "-c", str(spec), "--format", "json").stdout)
    assert stored == data
    rows = list(
        csv.DictReader(io.StringIO(run("report", "workloads", "-c", str(spec), "-f", "csv").stdout))
    )
    assert rows and list(rows[0]) == CSV_COLUMNS
    row = next(r for r in rows if (r["account"], r["user"]) == (first, USER))
    assert row["key"] == mask_key_id(keys[first]["AccessKeyId"]) and row["events"] == "3"
    assert row["runtime"] == "lambda" and "exec-env/AWS_Lambda_python3.12" in row["user_agents"]
    table = run("report", "workloads", "-c", str(spec)).stdout
    assert f"workloads run {data['run_id']}" in table
    assert USER in table and "lambda" in table and mask_key_id(keys[first]["AccessKeyId"]) in table

    # One account unreadable: exit 4 naming it; what was read is stored and printed.
    _remove_role(sandbox_process.member_iam(second))
    partial = run("workloads", "-c", str(spec), code=4)
    assert f"account(s) {second} (" in partial.stderr and "could not be read" in partial.stderr
    assert f"not read: {second}" in partial.stdout
    assert USER in partial.stdout and "lambda" in partial.stdout
    assert "next: iamc plan" not in partial.stdout
    after = json.loads(run("report", "workloads", "-c", str(spec), "--format", "json").stdout)
    assert after["run_id"] > data["run_id"] and second in after["accounts_failed"]
    # The unread account keeps its earlier placement.
    assert {(p["account_id"], p["user"]) for p in after["placements"]} >= {
        (first, USER),
        (second, USER),
    }

    text = "\n".join(outputs)
    assert not WHOLE_KEY.findall(text)
    assert not [s for s in secrets if s in text]
