"""Apply end to end: the CLI provisions an approved plan, reports it, and rolls it back."""

from __future__ import annotations

import json
import re

SPEC = """name = "e2e-apply"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
first_status_poll_s = 0.2  # the sandbox answers IN_PROGRESS twice, not for seconds
rate_limits = { iam = 40 }
"""


def test_apply_status_and_rollback_through_the_cli(iamc, sandbox_process, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    for step in (["inventory", "-c", str(spec)], ["map", "-c", str(spec)]):
        result = iamc(*step)
        assert result.returncode == 0, result.stderr
    result = iamc("plan", "-c", str(spec), "--out", str(tmp_path / "plan"))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    plan_id = str(plan["plan_id"])
    assert plan["permission_sets"] and plan["assignments"]
    before = sandbox_process.identity_center()

    refused = iamc("apply", plan_id, "-c", str(spec), "--stage", "provision")
    assert refused.returncode == 2
    assert "not approved for stage provision" in refused.stderr
    assert sandbox_process.identity_center() == before

    approve = iamc(
        "approve", plan_id, "-c", str(spec), "--by", "cab", "--ticket", "CHG-9",
        "--hash", plan["hash"][:12], "--stage", "provision",
    )  # fmt: skip
    assert approve.returncode == 0, approve.stderr
    applied = iamc("apply", plan_id, "-c", str(spec), "--stage", "provision")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    run_id = re.search(r"run (\d+) \(plan", applied.stdout).group(1)
    assert "0 failed, 0 pending" in applied.stdout
    after = sandbox_process.identity_center()
    assert len(after["assignments"] - before["assignments"]) == len(plan["assignments"])

    status = iamc("status", run_id, "-c", str(spec))
    assert status.returncode == 0, status.stderr
    assert f"run {run_id} (apply of plan {plan_id}, stage provision): succeeded" in status.stdout
    assert "error" not in status.stdout
    runs = iamc("runs", "-c", str(spec))
    assert re.search(rf"{run_id}\s.*apply\s.*succeeded", runs.stdout)

    dry = iamc("rollback", run_id, "-c", str(spec), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would undo: create-assignment" in dry.stdout
    assert "would undo: create-permission-set" in dry.stdout
    assert sandbox_process.identity_center() == after

    rolled = iamc("rollback", run_id, "-c", str(spec))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert sandbox_process.identity_center() == before
    # The applied run succeeded before its rollback: not "succeeded (by N)", as if superseded.
    applied_row = re.search(rf"\b{run_id}\s.*apply\s.*", iamc("runs", "-c", str(spec)).stdout)
    assert applied_row and "succeeded" in applied_row[0] and "(by" not in applied_row[0]
