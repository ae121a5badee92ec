"""Waves through the CLI: one spec, a plan per wave, and the waves report."""

from __future__ import annotations

import json


def test_plan_a_wave_and_report_the_waves(iamc, sandbox_process, tmp_path):
    accounts = sorted(
        a["account_id"]
        for a in sandbox_process.control.manifest()["accounts"]
        if a["status"] == "ACTIVE"
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "e2e-waves"\nstate = "sqlite:///state.db"\nprotected_users = ["breakglass-*"]\n'
        "[aws]\nrate_limits = { iam = 40 }\n"
        f'[[waves]]\nname = "wave-1"\ninclude_accounts = ["{accounts[0]}"]\n'
        '[[waves]]\nname = "wave-2"\n'
        f"include_accounts = {json.dumps(accounts[1:])}\n"
    )
    for step in (["inventory", "-c", str(spec)], ["map", "-c", str(spec)]):
        result = iamc(*step)
        assert result.returncode == 0, result.stderr

    unnamed = iamc("plan", "-c", str(spec))
    assert unnamed.returncode == 2
    assert "planned in waves: name one with --wave (wave-1, wave-2)" in unnamed.stderr

    planned = iamc("plan", "-c", str(spec), "--wave", "wave-1", "--out", str(tmp_path / "w1"))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "wave wave-1: plan" in planned.stdout
    plan = json.loads((tmp_path / "w1" / "plan.json").read_text())
    assert plan["wave"] == {"name": "wave-1", "accounts": [accounts[0]]}
    assert {u["account_id"] for u in plan["users"]} == {accounts[0]}
    assert "**Wave:** `wave-1`" in (tmp_path / "w1" / "plan.md").read_text()

    report = iamc("report", "waves", "-c", str(spec), "-f", "json")
    assert report.returncode == 0, report.stderr
    rows = {row["wave"]: row for row in json.loads(report.stdout)["waves"]}
    assert rows["wave-1"]["plan"] == plan["plan_id"]
    assert rows["wave-1"]["pending"].startswith(f"plan {plan['plan_id']} not approved")
    assert rows["wave-2"]["accounts"] == len(accounts) - 1
    assert rows["wave-2"]["pending"].startswith("no plan")
    table = iamc("report", "waves", "-c", str(spec))
    assert "wave-2" in table.stdout and "CIS" in table.stdout
