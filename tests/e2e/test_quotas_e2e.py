"""A plan over an account's IAM role quota exits 2 before approval, and can't be approved."""

from __future__ import annotations

import json

SANDBOX_SIZE = (2, 4)
SPEC = """name = "e2e-quotas"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
"""


def test_a_plan_over_the_role_quota_exits_2_and_is_refused_approval(
    iamc, sandbox_process, tmp_path
):
    control = sandbox_process.control
    # Every account reports a quota of one role: whatever provisioning adds goes over it.
    control.configure(roles_quota=1)
    try:
        spec = tmp_path / "spec.toml"
        spec.write_text(SPEC)
        for step in (["inventory", "-c", str(spec)], ["map", "-c", str(spec)]):
            result = iamc(*step)
            assert result.returncode == 0, result.stdout + result.stderr
        planned = iamc("plan", "-c", str(spec), "--out", str(tmp_path / "plan"))
    finally:
        control.configure(roles_quota=1000)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    quota = [f for f in plan["findings"] if f["kind"] == "quota-roles"]
    assert quota and all(f["severity"] == "blocking" for f in quota)
    first = quota[0]
    assert f"account {first['account_id']}: " in first["message"]
    assert f"to add > quota {first['details']['limit']:,}" in first["message"]
    assert "quota-roles" in (tmp_path / "plan" / "plan.md").read_text()

    approve = iamc(
        "approve",
        str(plan["plan_id"]),
        "-c",
        str(spec),
        "--by",
        "cab",
        "--ticket",
        "CHG-9",
        "--hash",
        plan["hash"][:12],
        "--stage",
        "provision",
    )
    assert approve.returncode != 0
    assert "blocking" in approve.stdout + approve.stderr
