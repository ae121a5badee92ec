"""The retire commands as an operator types them (subprocesses against the sandbox)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config


@pytest.fixture
def iamc(clean, iamc_runner):
    """``iamc(cwd, *args)``: the CLI as an operator runs it, against the sandbox."""

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
        return iamc_runner.run(args, cwd, iamc_runner.user_env(**clean.sandbox.env()))

    return run


def test_disable_bake_decide_rollback_one_user_and_plan_show(
    clean, retire_kit, iamc, tmp_path: Path
):
    kit, prefix = retire_kit, f"k{uuid.uuid4().hex[:6]}-"
    a1, a2 = clean.accounts
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    kit.seed_user(clean, a1, jane, keys=1)
    made = kit.seed_user(clean, a2, bob, keys=1)
    _spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)

    applied = iamc(tmp_path, "apply", str(plan_id), "-c", "spec.toml", "--stage", "disable")
    assert applied.returncode == 0, applied.stderr
    assert "4 done" in applied.stdout

    quiet = iamc(tmp_path, "bake", "-c", "spec.toml")
    assert quiet.returncode == 0, quiet.stderr
    assert "2 baking" in quiet.stdout

    key = made["keys"][0]
    stale = boto3.client(
        "iam",
        endpoint_url=clean.sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(user_agent="legacy-cron/2.0", retries={"max_attempts": 1}),
    )
    with pytest.raises(Exception, match="InvalidClientTokenId"):
        stale.get_user()
    used = iamc(tmp_path, "bake", "-c", "spec.toml")
    assert used.returncode == 3
    assert "in-use" in used.stdout and "GetUser" in used.stdout

    decided = iamc(
        tmp_path,
        "bake",
        "decide",
        f"{a2}/{bob}",
        "-c",
        "spec.toml",
        "--by",
        "alice",
        "--reason",
        "cron retired",
    )
    assert decided.returncode == 0, decided.stderr
    assert f"{a2}/{bob}: delete — decided by alice" in decided.stdout

    shown = iamc(tmp_path, "plan", "show", str(plan_id), "-c", "spec.toml")
    assert shown.returncode == 0, shown.stderr
    assert "delete preconditions of plan" in shown.stdout and "baking" in shown.stdout

    run_id = next(
        line.split()[1]
        for line in applied.stdout.splitlines()
        if line.startswith("run ") and "stage disable" in line
    )
    back = iamc(tmp_path, "rollback", run_id, "-c", "spec.toml", "--user", f"{a1}/{jane}")
    assert back.returncode == 0, back.stderr
    assert f"stage disable, user {a1}/{jane} only: 2 undone" in back.stdout
    state = kit.iam_state(clean, prefix)
    assert state[f"{a1}/{jane}"]["inline"] == [] and state[f"{a2}/{bob}"]["inline"] != []

    refused = iamc(tmp_path, "restore", "-c", "spec.toml", f"{a2}/{bob}")
    assert refused.returncode == 2 and "no snapshot" in refused.stderr
    assert "Traceback" not in refused.stderr
