"""Drift end to end: after a real apply through the CLI, an inline policy put by hand and an
assignment deleted by hand are found by `iamc drift` (exit 3), its plan is approved and
applied like any plan and restores both, and `iamc drift` then finds nothing (exit 0)."""

from __future__ import annotations

import json

import boto3

SANDBOX_SIZE = (2, 6)
SPEC = """name = "e2e-drift"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[aws]
first_status_poll_s = 0.2
rate_limits = { iam = 40 }
"""
EDITED = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _approve(iamc, spec, plan_id: str, plan_hash: str) -> None:
    approve = iamc(
        "approve", plan_id, "-c", str(spec), "--by", "cab", "--ticket", "CHG-7",
        "--hash", plan_hash[:12], "--stage", "provision",
    )  # fmt: skip
    assert approve.returncode == 0, approve.stderr


def test_drift_found_approved_applied_and_gone(iamc, sandbox_process, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    for step in (["inventory", "-c", str(spec)], ["map", "-c", str(spec)]):
        result = iamc(*step)
        assert result.returncode == 0, result.stderr
    result = iamc("plan", "-c", str(spec), "--out", str(tmp_path / "plan"))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    _approve(iamc, spec, str(plan["plan_id"]), plan["hash"])
    applied = iamc("apply", str(plan["plan_id"]), "-c", str(spec), "--stage", "provision")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    after_apply = sandbox_process.identity_center()

    clean = iamc("drift", "-c", str(spec))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "nothing to put back" in clean.stdout

    # By hand, outside iamc: a set's inline policy replaced, one assignment deleted.
    sso = boto3.client("sso-admin", endpoint_url=sandbox_process.url, **_keys(sandbox_process))
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    # A set of the plan that is provisioned (assigned): its inline policy put by hand (the
    # small demo organization's sets may have none, which is an edit too).
    with_inline = next(
        s
        for s in plan["permission_sets"]
        if any(a["permission_set_name"] == s["name"] for a in plan["assignments"])
    )
    arns = {
        sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)["PermissionSet"][
            "Name"
        ]: arn
        for arn in sso.list_permission_sets(InstanceArn=instance)["PermissionSets"]
    }
    edited = arns[with_inline["name"]]
    sso.put_inline_policy_to_permission_set(
        InstanceArn=instance, PermissionSetArn=edited, InlinePolicy=json.dumps(EDITED)
    )
    removed = plan["assignments"][0]
    sso.delete_account_assignment(
        InstanceArn=instance,
        TargetId=removed["account_id"],
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=arns[removed["permission_set_name"]],
        PrincipalType=removed["principal_type"],
        PrincipalId=removed["principal_id"],
    )

    found = iamc("drift", "-c", str(spec), "--out", str(tmp_path / "drift"))
    assert found.returncode == 3, found.stdout + found.stderr
    assert f"set-changed {with_inline['name']}" in found.stdout
    assert "inline_policy" in found.stdout
    assert f"assignment-removed {removed['permission_set_name']}" in found.stdout
    drift_plan = json.loads((tmp_path / "drift" / "plan.json").read_text())
    assert drift_plan["drift"]["complete"]

    plan_id = str(drift_plan["plan_id"])
    refused = iamc("apply", plan_id, "-c", str(spec), "--stage", "provision")
    assert refused.returncode == 2 and "not approved" in refused.stderr
    _approve(iamc, spec, plan_id, drift_plan["hash"])
    restored = iamc("apply", plan_id, "-c", str(spec), "--stage", "provision")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert sandbox_process.identity_center() == after_apply
    inline = sso.get_inline_policy_for_permission_set(InstanceArn=instance, PermissionSetArn=edited)
    recorded = with_inline.get("inline_policy")
    assert (json.loads(inline["InlinePolicy"]) if inline.get("InlinePolicy") else None) == recorded

    again = iamc("drift", "-c", str(spec))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to put back" in again.stdout


def _keys(sandbox_process) -> dict[str, str]:
    env = sandbox_process.env
    return {
        "region_name": "us-east-1",
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }
