"""The bake period (evidence of use, decisions) and restoring deleted users from snapshots."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from domain.errors import ApplyRefused, PlanError
from domain.retire import Decision
from engine.apply import apply_plan
from engine.migration import Migration
from engine.rollback import rollback_plan
from engine.runs import list_runs
from flows.bake import bake_report, decide
from flows.restore import restore
from state import Store

LATER = datetime.now(UTC) + timedelta(days=15)


def later() -> datetime:
    return LATER


def _prefix() -> str:
    return f"b{uuid.uuid4().hex[:6]}-"


def _states(report: dict) -> dict[str, str]:
    return {u["user"]: u["state"] for u in report["users"]}


def test_bake_watch_shows_who_tried_when_and_from_where(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    jane, bob, carol = f"{prefix}jane", f"{prefix}bob", f"{prefix}carol"
    kit.seed_user(clean, a1, jane, keys=0, password=True)
    made = kit.seed_user(clean, a2, bob, keys=1)
    kit.seed_user(clean, a2, carol, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    run_id = next(r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "apply")

    assert set(_states(bake_report(spec)).values()) == {"baking"}

    # jane's password is tried at the console; bob's old key still runs a backup script.
    clean.control.record_console_login_failure(
        a1, jane, source_ip="203.0.113.9", user_agent="Mozilla/5.0 Firefox/128.0"
    )
    key = made["keys"][0]
    stale = boto3.client(
        "iam",
        endpoint_url=clean.sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(user_agent="nightly-backup/1.0", retries={"max_attempts": 1}),
    )
    with pytest.raises(Exception, match="InvalidClientTokenId"):
        stale.list_users()
    # carol is brought back at 3 a.m.
    rollback_plan(spec, run_id, user=f"{a2}/{carol}")

    report = bake_report(spec, clock=later)

    users = {u["user"]: u for u in report["users"]}
    assert users[f"{a1}/{jane}"]["state"] == "in-use"
    login = users[f"{a1}/{jane}"]["evidence"][0]
    assert (login["event"], login["error"], login["source_ip"]) == (
        "ConsoleLogin",
        "Failed authentication",
        "203.0.113.9",
    )
    assert users[f"{a2}/{bob}"]["state"] == "in-use"
    denied = users[f"{a2}/{bob}"]["evidence"][0]
    assert denied["event"] == "ListUsers" and denied["error"] == "InvalidClientTokenId"
    assert "nightly-backup/1.0" in denied["user_agent"] and denied["key"] == key["AccessKeyId"]
    assert users[f"{a2}/{carol}"]["state"] == "re-enabled"
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert (
            len(store.retired.use_evidence(store.migrations.find_migration("wave-1"))) == 2
        )  # stored once
    bake_report(spec, clock=later)  # a second watch records nothing twice
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert len(store.retired.use_evidence(store.migrations.find_migration("wave-1"))) == 2

    decide(spec, f"{a2}/{bob}", by="ops-lead", reason="backup job moved to a role")
    decide(spec, f"{a1}/{jane}", by="ops-lead", reason="on leave", decision=Decision.KEEP)
    with pytest.raises(PlanError, match="--reason"):
        decide(spec, f"{a2}/{bob}", by="ops-lead", reason=" ")
    with pytest.raises(PlanError, match="not disabled by migration"):
        decide(spec, f"{a2}/nobody", by="x", reason="y")

    states = _states(bake_report(spec, collect=False, clock=later))
    assert states == {f"{a1}/{jane}": "keep", f"{a2}/{bob}": "ready", f"{a2}/{carol}": "re-enabled"}


def test_restore_recreates_what_aws_allows_and_names_the_rest(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    a1, _ = clean.accounts
    jane = f"{prefix}jane"
    made = kit.seed_user(
        clean,
        a1,
        jane,
        keys=1,
        ssh=True,
        cert=True,
        service_credential=True,
        password=True,
        mfa=True,
        inline=True,
        managed=True,
        group=f"{prefix}devs",
        tags={"team": "payments"},
    )
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    apply_plan(spec, plan_id, "delete", clock=later)
    assert kit.iam_state(clean, prefix) == {}
    clean.control.reset_calls()

    summary = restore(spec, f"{a1}/{jane}")

    (result,) = summary["users"]
    state = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    assert state["inline"] == ["own"]  # the quarantine is not brought back
    assert len(state["attached"]) == 1 and state["groups"] == [f"{prefix}devs"]
    assert [s for _, s in state["ssh"]] == ["Inactive"] and [s for _, s in state["certs"]] == [
        "Inactive"
    ]
    assert state["keys"] == [] and state["console"] is False and state["mfa"] == []
    iam = clean.member_iam(a1)
    user = iam.get_user(UserName=jane)["User"]
    assert user["Path"] == "/people/"
    assert iam.list_user_tags(UserName=jane)["Tags"] == [{"Key": "team", "Value": "payments"}]
    assert clean.control.calls()["calls"].get("iam:CreateAccessKey", 0) == 0
    cannot = "\n".join(result["cannot"])
    key_id = made["keys"][0]["AccessKeyId"]
    assert f"access key {key_id[:4]}…{key_id[-4:]}" in cannot and key_id not in cannot
    assert "console password" in cannot and made["mfa"] in cannot
    assert "service-specific credential" in cannot
    assert f"new unique id ({user['UserId']})" in cannot and result["old_user_id"] in cannot

    again = restore(spec, f"{a1}/{jane}")["users"][0]
    assert again["restored"] == [] and "user " + jane in again["present"]

    with pytest.raises(ApplyRefused, match="no snapshot"):
        restore(spec, f"{a1}/{prefix}nobody")
    with pytest.raises(ApplyRefused, match="name one user"):
        restore(spec)


def test_restore_a_whole_delete_run(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    kit.seed_user(clean, a1, f"{prefix}jane", keys=1, inline=True)
    kit.seed_user(clean, a2, f"{prefix}bob", keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    summary = apply_plan(spec, plan_id, "delete", clock=later)

    restored = restore(spec, run_id=summary["run_id"])

    assert sorted(u["user"] for u in restored["users"]) == sorted(
        [f"{a1}/{prefix}jane", f"{a2}/{prefix}bob"]
    )
    assert set(kit.iam_state(clean, prefix)) == {f"{a1}/{prefix}jane", f"{a2}/{prefix}bob"}
