"""Key scan end to end: inventory, `iamc scan` of the samples and the AWS side, report, plan.

Every planted key is found where the seed put it and joined to its owner; no decoy is an org
key; the plan holds the disable/delete of a user whose active key is written down; and no
secret (nor a whole key id, outside the state DB) reaches the CLI output or Prefect's database.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path

import boto3
import pytest

from domain.keys import mask_key_id

pytestmark = pytest.mark.e2e

_SECRET = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])")


def _samples_dir(sandbox_process) -> Path:
    args = list(sandbox_process.process.args)
    return Path(args[args.index("--samples-dir") + 1])


def _member_client(sandbox_process, account_id: str, service: str):
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox_process.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="e2e",
    )["Credentials"]
    return boto3.client(
        service,
        endpoint_url=sandbox_process.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _planted_secrets(samples: Path, sandbox_process, manifest: dict) -> set[str]:
    """Every secret access key the seed wrote down: samples, zip, git history, Lambda."""
    texts = [p.read_text() for p in (samples / "upload_reports.py", samples / ".env")]
    with zipfile.ZipFile(samples / "build" / "deploy-bundle.zip") as bundle:
        texts += [bundle.read(name).decode() for name in bundle.namelist()]
    texts.append(
        subprocess.run(
            ["git", "-C", str(samples), "log", "-p", "--all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    lambda_where = next(p for p in manifest["planted_keys"] if p["source"] == "lambda")
    function = _member_client(sandbox_process, lambda_where["account_id"], "lambda")
    variables = function.get_function_configuration(FunctionName="acme-report-uploader")
    texts.append(json.dumps(variables["Environment"]["Variables"]))
    secrets = {s for text in texts for s in _SECRET.findall(text) if "EXAMPLE" not in s}
    return {s for s in secrets if any(c.islower() for c in s) and any(c.isupper() for c in s)}


def test_scan_finds_every_planted_key_joins_it_and_holds_the_plan(
    iamc, sandbox_process, prefect_api, tmp_path
):
    manifest = sandbox_process.control.manifest()
    samples = _samples_dir(sandbox_process)
    # A retiring (stale) user's active key written down in a second repository: the plan
    # would disable that user, so the key must hold its disable and delete.
    stale_account, stale_user = next(
        (a["account_id"], u["name"])
        for a in manifest["accounts"]
        for u in a["users"]
        if u["kind"] == "stale"
    )
    stale_key = next(
        k["AccessKeyId"]
        for k in _member_client(sandbox_process, stale_account, "iam").list_access_keys(
            UserName=stale_user
        )["AccessKeyMetadata"]
        if k["Status"] == "Active"
    )
    extra = tmp_path / "deploy-scripts"
    extra.mkdir()
    (extra / "deploy.sh").write_text(f"export AWS_ACCESS_KEY_ID={stale_key}\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "e2e-keys"\nstate = "sqlite:///state.db"\nprotected_users = ["breakglass-*"]\n'
        "[aws]\nrate_limits = { iam = 40 }\n"
        f'[scan]\npaths = ["{samples}", "deploy-scripts", "no-such-repo"]\n'
    )
    outputs: list[str] = []

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        result = iamc(*args)
        outputs.extend([result.stdout, result.stderr])
        assert result.returncode == code, (args, result.stdout, result.stderr)
        return result

    run("inventory", "-c", str(spec))
    scanned = run("scan", "-c", str(spec))
    assert "key scan run" in scanned.stdout
    # The missing path: one line naming the spec file and key; the rest of the scan ran.
    assert "scan.paths[2]: 'no-such-repo' does not exist" in scanned.stdout

    report = json.loads(run("report", "keys", "-c", str(spec), "--format", "json").stdout)
    rows = report["findings"]
    for planted in manifest["planted_keys"]:
        matches = [
            r
            for r in rows
            if r["key"] == mask_key_id(planted["key_id"])
            and r["location"].startswith(planted["where"])
            and r["source"] == planted["source"]
        ]
        assert matches, planted
        row = matches[0]
        assert row["classification"] == "org-key-active", row
        assert (row["owner_account_id"], row["owner_user"]) == (
            planted["account_id"],
            planted["user"],
        )
        assert row["history_only"] == planted["history_only"]
    decoys = {d["where"] for d in manifest["decoys"]}
    org_keys = [r for r in rows if r["classification"].startswith("org-key")]
    assert not {r["location"] for r in org_keys} & decoys
    ignored = {r["location"] for r in rows if r["classification"] == "ignored"}
    assert decoys <= ignored
    assert any(p["location"] == "no-such-repo" for p in report["problems"])

    sarif = json.loads(run("report", "keys", "-c", str(spec), "--format", "sarif").stdout)
    assert sarif["version"] == "2.1.0"
    driver = sarif["runs"][0]["tool"]["driver"]
    assert driver["name"] == "iamc" and driver["rules"]
    results = sarif["runs"][0]["results"]
    assert results and all(
        r["ruleId"]
        and r["message"]["text"]
        and r["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
        for r in results
    )
    assert any(
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "upload_reports.py"
        for r in results
    )
    run("report", "keys", "-c", str(spec), "--format", "csv")
    table = run("report", "keys", "-c", str(spec))
    assert "org-key-active" in table.stdout

    run("map", "-c", str(spec))
    planned = run("plan", "-c", str(spec), code=2)
    assert "only stage provision can be approved" in planned.stdout
    plan_dir = next((tmp_path / "plans").iterdir())
    markdown = (plan_dir / "plan.md").read_text()
    assert "hard-coded-key" in markdown and stale_user in markdown
    assert "deploy-scripts/deploy.sh:1" in markdown and "blocks disable/delete" in markdown
    assert "Lambda function acme-report-uploader" in markdown  # a workload user's worklist row
    assert stale_key not in markdown and stale_key not in (plan_dir / "plan.json").read_text()

    # Secrets: nowhere (CLI output, state DB, Prefect's databases); whole key ids only in the
    # state DB.
    secrets = _planted_secrets(samples, sandbox_process, manifest)
    key_ids = {p["key_id"] for p in manifest["planted_keys"]} | {stale_key}
    assert secrets and key_ids
    cli_output = "\n".join(outputs)
    state_db = (tmp_path / "state.db").read_bytes()
    time.sleep(2)  # the server writes the runs' last log and event batches
    # This process's Prefect home holds its Prefect server's home too (tests/conftest.py).
    prefect_homes = [Path(os.environ["PREFECT_HOME"])]
    assert (prefect_homes[0] / "server" / "prefect.db").is_file(), "the server's DB is read too"
    prefect_bytes = b"".join(
        path.read_bytes()
        for home in prefect_homes
        for path in home.rglob("*")
        if path.is_file() and path.stat().st_size < 512 * 1024 * 1024
    )
    assert prefect_bytes, prefect_homes
    for secret in secrets:
        assert secret not in cli_output
        assert secret.encode() not in state_db
        assert secret.encode() not in prefect_bytes
    for key_id in key_ids:
        assert key_id not in cli_output, key_id
        assert key_id.encode() not in prefect_bytes, key_id
    assert stale_key.encode() in state_db  # the one place whole key ids live


def test_scan_of_a_repository_git_refuses_exits_4_and_every_report_lists_it(
    iamc, tmp_path, refuse_by_git
):
    repo = tmp_path / "their-clone"
    repo.mkdir()
    git_env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    # A file name that is not UTF-8 (Latin-1 "café"), with a key id in it.
    with open(os.fsencode(repo) + b"/caf\xe9.env", "wb") as handle:
        handle.write(b"AWS_ACCESS_KEY_ID=AKIAQ3EGRDZ5V7WKTJNM\n")
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "a"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=git_env)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "e2e-refused"\nstate = "sqlite:///state.db"\n'
        '[scan]\npaths = ["their-clone"]\naws = false\n'
    )
    assert iamc("inventory", "-c", str(spec)).returncode == 0
    env = refuse_by_git(repo)

    scanned = iamc("scan", "-c", str(spec), **env)

    output = scanned.stdout + scanned.stderr
    assert scanned.returncode == 4, output
    assert "incomplete" in output and "their-clone" in output
    assert f"git config --global --add safe.directory {repo}" in " ".join(output.split())
    report = json.loads(iamc("report", "keys", "-c", str(spec), "--format", "json").stdout)
    (failed,) = [p for p in report["problems"] if p["kind"] == "failed"]
    assert (failed["root"], failed["location"]) == ("their-clone", "git history")
    assert "dubious ownership" in failed["reason"]
    assert "caf\\xe9.env:1" in {row["location"] for row in report["findings"]}
    assert "caf\\xe9.env" in iamc("report", "keys", "-c", str(spec), "--format", "csv").stdout
    sarif = json.loads(iamc("report", "keys", "-c", str(spec), "--format", "sarif").stdout)
    (invocation,) = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    (notification,) = invocation["toolExecutionNotifications"]
    assert notification["level"] == "error" and "safe.directory" in notification["message"]["text"]
    table = iamc("report", "keys", "-c", str(spec))
    assert "failed their-clone: git history: git refused" in " ".join(table.stdout.split())
