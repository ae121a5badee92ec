"""The plan end to end: counts match the seed, same hash twice, one change moves one target."""

from __future__ import annotations

import json
import re
from pathlib import Path

SPEC = """name = "e2e-plan"
state = "sqlite:///state.db"
protected_users = ["breakglass-*"]
[inventory]
concurrency = 4
[aws]
rate_limits = { iam = 40 }
"""


def plan_once(iamc, spec: Path, out: Path) -> tuple[dict, str]:
    for step in (["inventory", "-c", str(spec)], ["map", "-c", str(spec)]):
        result = iamc(*step)
        assert result.returncode == 0, result.stderr
    result = iamc("plan", "-c", str(spec), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "plan.json").read_text()), result.stdout


def test_plan_matches_the_seed_is_stable_and_tracks_one_change(iamc, sandbox_process, tmp_path):
    manifest = sandbox_process.control.manifest()
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    plan, _ = plan_once(iamc, spec, tmp_path / "first")

    markdown = (tmp_path / "first" / "plan.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Per account")
    assert plan["hash"] in markdown
    seeded = [u for a in manifest["accounts"] if a["status"] == "ACTIVE" for u in a["users"]]
    by_class: dict[str, int] = {}
    for user in seeded:
        by_class[user["expected_class"]] = by_class.get(user["expected_class"], 0) + 1
    outcomes: dict[str, int] = {}
    for user in plan["users"]:
        outcomes[user["outcome"]] = outcomes.get(user["outcome"], 0) + 1
    assert len(plan["users"]) == len(seeded)
    assert outcomes["skip-protected"] == by_class["protected"]
    assert outcomes["skip-workload"] == by_class["workload"]
    assert outcomes["retire"] == by_class["unused"]
    humans = outcomes.get("migrate", 0) + outcomes.get("skip-unmatched", 0)
    assert humans + outcomes.get("skip-ambiguous", 0) == by_class["human"]
    assert outcomes.get("skip-unmatched", 0) >= len(manifest["unmatched_humans"])

    # Same inputs: same plan, same hash, same id.
    again = iamc("plan", "-c", str(spec), "--out", str(tmp_path / "again"))
    assert again.returncode == 0 and "reused" in again.stdout
    assert json.loads((tmp_path / "again" / "plan.json").read_text())["hash"] == plan["hash"]

    # Approve it, once.
    approve = iamc(
        "approve",
        str(plan["plan_id"]),
        "-c",
        str(spec),
        "--by",
        "cab",
        "--ticket",
        "CHG-7",
        "--hash",
        plan["hash"][:12],
        "--stage",
        "provision",
    )
    assert approve.returncode == 0, approve.stderr
    twice = iamc(
        "approve",
        str(plan["plan_id"]),
        "-c",
        str(spec),
        "--by",
        "cab",
        "--ticket",
        "CHG-8",
        "--hash",
        plan["hash"][:12],
        "--stage",
        "provision",
    )
    assert twice.returncode == 2 and "already approved by cab" in twice.stderr
    shown = iamc("plan", "show", str(plan["plan_id"]), "-c", str(spec))
    assert re.search(r"provision approved by cab \(CHG-7\)", shown.stdout)

    # Inventory and map again, nothing changed: the same plan, and its approval still applies.
    kept, out = plan_once(iamc, spec, tmp_path / "kept")
    assert kept["hash"] == plan["hash"] and kept["plan_id"] == plan["plan_id"]
    assert "reused" in out and "provision approved by cab (CHG-7)" in out
    verified = iamc("plan", "verify", str(tmp_path / "kept" / "plan.json"), "-c", str(spec))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "identical" in verified.stdout

    # One user changes in AWS: after re-inventory and re-plan, only its fingerprint moves.
    stale = next(u for u in plan["users"] if u["outcome"] == "retire")
    sandbox_process.member_iam(stale["account_id"]).tag_user(
        UserName=stale["user"], Tags=[{"Key": "owner", "Value": "someone-new"}]
    )
    changed, _ = plan_once(iamc, spec, tmp_path / "changed")
    before = {(u["account_id"], u["user"]): u["target_fingerprint"] for u in plan["users"]}
    after = {(u["account_id"], u["user"]): u["target_fingerprint"] for u in changed["users"]}
    assert {k for k in before if before[k] != after[k]} == {(stale["account_id"], stale["user"])}
    assert changed["hash"] != plan["hash"]
