"""The disable stage: every credential Inactive and the quarantine attached; undone exactly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from domain.errors import ApplyFailed, ApplyRefused
from domain.records import Finding
from domain.teardown import QUARANTINE_POLICY_NAME
from engine.apply import apply_plan
from engine.rollback import rollback_plan
from flows.apply import resume
from state import Store

DISABLE_MUTATIONS = (
    "UpdateAccessKey",
    "UpdateSSHPublicKey",
    "UpdateSigningCertificate",
    "UpdateServiceSpecificCredential",
    "PutUserPolicy",
    "DeleteUserPolicy",
)


def _prefix() -> str:
    return f"d{uuid.uuid4().hex[:6]}-"


def _mutations(world) -> dict[str, int]:
    counts = world.control.calls()["calls"]
    return {op: counts.get(f"iam:{op}", 0) for op in DISABLE_MUTATIONS if counts.get(f"iam:{op}")}


def _run_id(tmp_path: Path, kind: str = "apply") -> int:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return [r.id for r in store.runs.list_runs() if r.kind == kind][-1]


def _everything(world, kit, prefix: str) -> tuple[str, str]:
    a1, a2 = world.accounts
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    kit.seed_user(
        world,
        a1,
        jane,
        keys=1,
        inactive_keys=1,
        ssh=True,
        cert=True,
        service_credential=True,
        password=True,
        inline=True,
    )
    kit.seed_user(world, a2, bob, keys=1)
    return jane, bob


def test_disable_turns_every_credential_off_quarantines_and_keeps_the_password(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    jane, bob = _everything(clean, kit, prefix)
    a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    before = kit.iam_state(clean, prefix)
    clean.control.reset_calls()

    summary = apply_plan(spec, plan_id, "disable")

    # jane: quarantine + active key + ssh + cert + service credential; bob: quarantine + key
    assert summary["succeeded"] == 7 and summary["failed"] == summary["pending"] == 0
    after = kit.iam_state(clean, prefix)
    j = after[f"{a1}/{jane}"]
    assert {status for _, status in j["keys"]} == {"Inactive"}
    assert j["ssh"][0][1] == j["certs"][0][1] == j["service"][0][1] == "Inactive"
    assert j["console"] is True  # the password stays: the quarantine makes it useless
    assert j["inline"] == sorted(["own", QUARANTINE_POLICY_NAME])
    assert after[f"{a2}/{bob}"]["inline"] == [QUARANTINE_POLICY_NAME]
    # Only what was Active was changed: the inactive key was never touched.
    assert _mutations(clean) == {
        "UpdateAccessKey": 2,
        "UpdateSSHPublicKey": 1,
        "UpdateSigningCertificate": 1,
        "UpdateServiceSpecificCredential": 1,
        "PutUserPolicy": 2,
    }
    assert before != after

    # Applying again changes nothing: the journal says it is done.
    clean.control.reset_calls()
    again = apply_plan(spec, plan_id, "disable")
    assert again["succeeded"] == 7
    assert _mutations(clean) == {}


def test_rollback_restores_exactly_the_prior_statuses(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    _everything(clean, kit, prefix)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    before = kit.iam_state(clean, prefix)
    apply_plan(spec, plan_id, "disable")
    run_id = _run_id(tmp_path)

    listing = rollback_plan(spec, run_id, dry_run=True)
    assert len(listing["undo"]) == 7

    clean.control.reset_calls()
    rollback_plan(spec, run_id)

    assert kit.iam_state(clean, prefix) == before  # the inactive key is still Inactive
    assert _mutations(clean) == {
        "UpdateAccessKey": 2,
        "UpdateSSHPublicKey": 1,
        "UpdateSigningCertificate": 1,
        "UpdateServiceSpecificCredential": 1,
        "DeleteUserPolicy": 2,
    }


def test_rollback_of_one_user_brings_back_only_that_person(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    jane, bob = _everything(clean, kit, prefix)
    a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    before = kit.iam_state(clean, prefix)
    apply_plan(spec, plan_id, "disable")
    disabled = kit.iam_state(clean, prefix)
    run_id = _run_id(tmp_path)

    summary = rollback_plan(spec, run_id, user=f"{a2}/{bob}")

    assert summary["user"] == f"{a2}/{bob}" and len(summary["undo"]) == 2
    after = kit.iam_state(clean, prefix)
    assert after[f"{a2}/{bob}"] == before[f"{a2}/{bob}"]
    assert after[f"{a1}/{jane}"] == disabled[f"{a1}/{jane}"]

    with pytest.raises(ApplyRefused, match="did nothing to"):
        rollback_plan(spec, run_id, user=f"{a2}/nobody")
    with pytest.raises(ApplyRefused, match="ACCOUNT/NAME"):
        rollback_plan(spec, run_id, user="bob")

    # The whole run's rollback later undoes the rest, and bob is not undone twice.
    clean.control.reset_calls()
    rollback_plan(spec, run_id)
    assert kit.iam_state(clean, prefix) == before
    assert _mutations(clean)["DeleteUserPolicy"] == 1


def test_a_user_with_a_credential_created_since_the_plan_is_refused_the_others_proceed(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    jane, bob = _everything(clean, kit, prefix)
    a1, a2 = clean.accounts
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    new_key = clean.member_iam(a2).create_access_key(UserName=bob)["AccessKey"]["AccessKeyId"]

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable")

    message = str(err.value)
    assert f"refused {a2}/{bob}: active credential(s) created since the plan" in message
    assert f"access key {new_key[:4]}…{new_key[-4:]}" in message
    assert new_key not in message  # never a whole key id
    after = kit.iam_state(clean, prefix)
    assert after[f"{a2}/{bob}"]["inline"] == []  # untouched
    assert QUARANTINE_POLICY_NAME in after[f"{a1}/{jane}"]["inline"]

    # Once the new key is dealt with, a resume finishes bob.
    clean.member_iam(a2).delete_access_key(UserName=bob, AccessKeyId=new_key)
    summary = resume(spec, _run_id(tmp_path))
    assert summary["succeeded"] == 7


def test_a_user_scoped_blocking_finding_refuses_only_that_user(clean, retire_kit, tmp_path: Path):
    kit, prefix = retire_kit, _prefix()
    jane, bob = _everything(clean, kit, prefix)
    a1, a2 = clean.accounts
    finding = Finding(
        severity="blocking",
        kind="hard-coded-key",
        message="its active key is written in deploy/settings.py",
        account_id=a2,
        subject=f"user {bob}",
        details={"scope": "user"},
    )
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix, extra_findings=[finding])

    summary = apply_plan(spec, plan_id, "disable")  # the plan stays approvable and runs

    assert summary["refused_by_plan"] == [
        f"{a2}/{bob}: hard-coded-key: its active key is written in deploy/settings.py"
    ]
    after = kit.iam_state(clean, prefix)
    assert after[f"{a2}/{bob}"]["inline"] == []
    assert QUARANTINE_POLICY_NAME in after[f"{a1}/{jane}"]["inline"]
