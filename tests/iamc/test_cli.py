"""The CLI as a user meets it: bad input and missing credentials give one line and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "iamc.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_credentials_is_one_clear_line(tmp_path: Path):
    (tmp_path / "spec.toml").write_text('name = "x"\nstate = "sqlite:///s.db"\n')
    result = run(
        ["inventory", "-c", "spec.toml"],
        tmp_path,
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_DEFAULT_REGION="us-east-1",
    )
    assert result.returncode == 4
    assert "no AWS credentials found" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_spec_names_the_file_and_key(tmp_path: Path):
    (tmp_path / "spec.toml").write_text('name = "x"\n[decommission]\nbake_days = "soon"\n')
    result = run(["check", "-c", "spec.toml"], tmp_path)
    assert result.returncode == 2
    assert "spec.toml" in result.stderr and "decommission.bake_days" in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_prints_valid_json(tmp_path: Path):
    import json

    result = run(["policy", "management"], tmp_path)
    assert result.returncode == 0
    actions = {a for s in json.loads(result.stdout)["Statement"] for a in s["Action"]}
    assert "sso:CreateAccountAssignment" in actions and "sts:AssumeRole" in actions
    # Without a spec the role names are the defaults, and stderr says so (stdout stays JSON).
    assert "OrganizationAccountAccessRole" in result.stderr and "-c SPEC" in result.stderr


def test_policy_takes_role_names_and_protected_tag_from_the_spec(tmp_path: Path):
    import json

    (tmp_path / "spec.toml").write_text(
        'name = "x"\nmember_role = "Audit"\nprotected_tag = "team:keep"\n'
        '[aws]\nrestore_role = "Restorer"\n'
    )
    management = json.loads(run(["policy", "management", "-c", "spec.toml"], tmp_path).stdout)
    (assuming,) = [s for s in management["Statement"] if "sts:AssumeRole" in s["Action"]]
    assert assuming["Resource"] == ["arn:aws:iam::*:role/Audit", "arn:aws:iam::*:role/Restorer"]
    result = run(["policy", "restore", "-c", "spec.toml"], tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    restore = json.loads(result.stdout)
    assert "iam:CreateUser" in {a for s in restore["Statement"] for a in s["Action"]}
    assert "iam:ResourceTag/team:keep" in result.stdout


def test_approve_without_a_hash_is_refused_before_anything_is_read(tmp_path: Path):
    (tmp_path / "spec.toml").write_text('name = "x"\nstate = "sqlite:///s.db"\n')
    args = ["approve", "1", "-c", "spec.toml", "--stage", "delete", "--by", "x", "--ticket", "y"]
    result = run(args, tmp_path)
    assert result.returncode == 2
    assert "--hash" in result.stderr and "Missing option" in result.stderr


def test_drift_and_export_refuse_the_central_roles_target_in_one_line(tmp_path: Path):
    (tmp_path / "spec.toml").write_text(
        'name = "x"\nstate = "sqlite:///s.db"\ntarget = "central-roles"\n'
        '[central]\naccount = "999999999999"\n'
    )
    for args, what in (
        (["drift"], "iamc drift reads Identity Center only; the central-roles target has no "
         "drift check yet"),
        (["export", "terraform"], "iamc export terraform reads Identity Center only; the "
         "central-roles target has no terraform export yet"),
        (["export", "cloudformation"], "iamc export cloudformation reads Identity Center only; "
         "the central-roles target has no cloudformation export yet"),
    ):  # fmt: skip
        result = run([*args, "-c", "spec.toml"], tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == f"error: {what}"


def test_ui_on_a_port_in_use_is_one_line_and_starts_nothing(tmp_path: Path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run(["ui", "--port", str(port), "--workdir", str(tmp_path / "ui")], tmp_path)
    assert result.returncode != 0
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "--port" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ui").exists()  # refused before a sandbox, server or state
