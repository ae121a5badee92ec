"""Runs an operator can trust, through the CLI: kill -9, a stale resume, IAM changed after plan."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

SPEC = """name = "e2e-trust"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
first_status_poll_s = 0.2  # the sandbox answers IN_PROGRESS twice, not for seconds
rate_limits = { iam = 40 }
"""
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def shape(identity_center: dict[str, set]) -> tuple[int, int]:
    return len(identity_center["permission_sets"]), len(identity_center["assignments"])


def approved_plan(iamc, tmp_path: Path) -> tuple[Path, dict]:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    for step in (["inventory", "-c", str(spec)], ["map", "-c", str(spec)]):
        result = iamc(*step)
        assert result.returncode == 0, result.stdout + result.stderr
    result = iamc("plan", "-c", str(spec), "--out", str(tmp_path / "plan"))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    approve = iamc(
        "approve", str(plan["plan_id"]), "-c", str(spec), "--by", "cab", "--ticket", "CHG-1",
        "--hash", plan["hash"][:12], "--stage", "provision",
    )  # fmt: skip
    assert approve.returncode == 0, approve.stdout + approve.stderr
    return spec, plan


@pytest.fixture(scope="module")
def prepared(iamc_in, tmp_path_factory) -> Path:
    """inventory -> map -> plan -> approve through the CLI, once for the module.

    Both tests start from the same seeded IAM users, and neither one's changes to IAM come
    before this, so each test's copy of the state DB holds the plan a fresh run would make
    (the second test re-reads IAM live before applying, as every apply does).
    """
    directory = tmp_path_factory.mktemp("approved")
    approved_plan(iamc_in(directory), directory)
    return directory


def copy_of(prepared: Path, tmp_path: Path) -> tuple[Path, dict]:
    """The test's own copy of the prepared spec, state DB and plan files."""
    for name in ("spec.toml", "state.db"):
        shutil.copy2(prepared / name, tmp_path / name)
    shutil.copytree(prepared / "plan", tmp_path / "plan")
    return tmp_path / "spec.toml", json.loads((tmp_path / "plan" / "plan.json").read_text())


def test_a_killed_rollback_is_interrupted_and_never_resumes_after_a_later_run(
    iamc, iamc_started, sandbox_process, prepared, tmp_path
):
    spec, plan = copy_of(prepared, tmp_path)
    plan_id = str(plan["plan_id"])
    applied = iamc("apply", plan_id, "-c", str(spec), "--stage", "provision")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    run_a = re.search(r"run (\d+) \(plan", applied.stdout).group(1)
    after_apply = sandbox_process.identity_center()

    # kill -9 the rollback right after its first DeleteAccountAssignment.
    control = sandbox_process.control
    control.configure(latency_ms=300)
    control.reset_calls()
    killed = iamc_started("rollback", run_a, "-c", str(spec))
    deadline = time.monotonic() + 120
    while control.calls()["calls"].get("sso-admin:DeleteAccountAssignment", 0) < 1:
        assert killed.poll() is None and time.monotonic() < deadline, "rollback ended early"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    control.configure(latency_ms=0)

    runs = iamc("runs", "-c", str(spec))
    run_r = re.search(r"(\d+)\s+│\s*rollback\s+│\s*interrupted", runs.stdout)
    assert run_r, runs.stdout
    run_r = run_r.group(1)
    assert f"iamc resume {run_r}" in runs.stdout

    # The operator rolls back afresh (no 2-minute wait: the dead holder is on this host),
    # then applies the plan again.
    again = iamc("rollback", run_a, "-c", str(spec))
    assert again.returncode == 0, again.stdout + again.stderr
    reapplied = iamc("apply", plan_id, "-c", str(spec), "--stage", "provision")
    assert reapplied.returncode == 0, reapplied.stdout + reapplied.stderr
    run_b = re.search(r"run (\d+) \(plan", reapplied.stdout).group(1)
    # Re-created permission sets get new ARNs: compare what exists, not the ARNs.
    assert shape(sandbox_process.identity_center()) == shape(after_apply)
    after_reapply = sandbox_process.identity_center()

    for stale in (run_r, run_a):
        refused = iamc("resume", stale, "-c", str(spec))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"run {stale} was superseded by run {run_b}" in refused.stderr
        assert "0/?" not in refused.stdout + refused.stderr  # refused before any progress bar
    assert sandbox_process.identity_center() == after_reapply
    status = iamc("status", run_r, "-c", str(spec))
    assert "superseded by run" in status.stdout, status.stdout


def _delete_user(iam, name: str) -> None:
    """Delete an IAM user the way AWS requires (the sandbox enforces DeleteConflict)."""
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        iam.delete_login_profile(UserName=name)
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    for key in iam.list_ssh_public_keys(UserName=name)["SSHPublicKeys"]:
        iam.delete_ssh_public_key(UserName=name, SSHPublicKeyId=key["SSHPublicKeyId"])
    for cert in iam.list_signing_certificates(UserName=name)["Certificates"]:
        iam.delete_signing_certificate(UserName=name, CertificateId=cert["CertificateId"])
    for device in iam.list_mfa_devices(UserName=name)["MFADevices"]:
        iam.deactivate_mfa_device(UserName=name, SerialNumber=device["SerialNumber"])
    for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
        iam.delete_user_policy(UserName=name, PolicyName=policy)
    for policy in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]:
        iam.detach_user_policy(UserName=name, PolicyArn=policy["PolicyArn"])
    for group in iam.list_groups_for_user(UserName=name)["Groups"]:
        iam.remove_user_from_group(UserName=name, GroupName=group["GroupName"])
    iam.delete_user(UserName=name)


def test_iam_changed_after_approval_refuses_those_accounts_and_names_the_users(
    iamc, sandbox_process, prepared, tmp_path
):
    spec, plan = copy_of(prepared, tmp_path)
    migrating: dict[str, list[str]] = {}
    for user in plan["users"]:
        if user["outcome"] == "migrate":
            migrating.setdefault(user["account_id"], []).append(user["user"])
    assert len(migrating) >= 2, plan["users"]
    (grown, grown_users), (gone, gone_users) = sorted(migrating.items())[:2]
    sandbox_process.member_iam(grown).attach_user_policy(UserName=grown_users[0], PolicyArn=ADMIN)
    _delete_user(sandbox_process.member_iam(gone), gone_users[0])
    before = sandbox_process.identity_center()

    applied = iamc("apply", str(plan["plan_id"]), "-c", str(spec), "--stage", "provision")
    output = applied.stdout + applied.stderr
    assert applied.returncode == 1, output
    assert f"account {grown}: nothing changed here" in output
    assert f"user {grown_users[0]}: attached policies +{ADMIN}" in output
    assert f"user {gone_users[0]}: deleted since the plan" in output
    after = sandbox_process.identity_center()
    changed = {a for a, _, _ in after["assignments"] - before["assignments"]}
    assert changed.isdisjoint({grown, gone}), changed
    # iamc status says why those accounts are pending, not only the run's failure message.
    run_id = re.search(r"\brun (\d+)\b", output).group(1)
    status = iamc("status", run_id, "-c", str(spec)).stdout
    assert f"refused {grown}: account refused: nothing changed here" in status, status
