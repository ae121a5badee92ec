"""Restore is exact and safe: a name held by someone else is refused, a half-deleted user is
rebuilt, changes made while a delete was stopped are snapshotted, and a restore cut off
half-way resumes without sending anything twice."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ApplyFailed, ApplyRefused
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.lease import stage_lease
from engine.migration import Migration
from engine.reports import load_plan
from engine.runs import list_runs
from flows.apply import resume
from flows.restore import restore
from state import Store

LATER = datetime.now(UTC) + timedelta(days=15)
# What a restore can bring back of a user (keys, password, MFA and service credentials can't
# come back; the quarantine is not put back on a user that has no credentials left).
RESTORABLE = ("inline", "attached", "groups", "ssh", "certs")
DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:List*", "Resource": "*"}],
}


def later() -> datetime:
    return LATER


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'state.db'}")


def _restorable(state: dict[str, Any]) -> dict[str, Any]:
    """The restorable part of a user's iam_state: ids a re-upload changes are dropped."""
    shown = {name: state[name] for name in RESTORABLE}
    shown["inline"] = [p for p in shown["inline"] if p != "iamc-quarantine"]
    shown["ssh"] = [status for _, status in shown["ssh"]]
    shown["certs"] = [status for _, status in shown["certs"]]
    return shown


def _disabled_jane(clean, kit, tmp_path: Path) -> tuple[str, str, Path, int]:
    prefix = f"r{uuid.uuid4().hex[:6]}-"
    a1 = clean.accounts[0]
    jane = f"{prefix}jane"
    kit.seed_user(
        clean,
        a1,
        jane,
        keys=1,
        ssh=True,
        cert=True,
        password=True,
        inline=True,
        managed=True,
        group=f"{prefix}devs",
        tags={"team": "payments"},
    )
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    return prefix, jane, spec, plan_id


def _delete_action(spec: Path, plan_id: int, kind: str) -> str:
    plan, _ = Migration.call(load_plan, spec, plan_id)
    return next(a.id for a in plan.actions if a.stage == "delete" and a.kind == kind)


def _mutations(clean) -> dict[str, int]:
    calls = clean.control.calls()["calls"]
    verbs = ("Create", "Put", "Attach", "Add", "Upload", "Update", "Tag")
    return {k: v for k, v in calls.items() if k.startswith("iam:") and k[4:].startswith(verbs)}


def test_restore_refuses_a_name_now_held_by_another_user(clean, retire_kit, tmp_path: Path):
    kit = retire_kit
    prefix, jane, spec, plan_id = _disabled_jane(clean, kit, tmp_path)
    apply_plan(spec, plan_id, "delete", clock=later)
    a1 = clean.accounts[0]
    iam = clean.member_iam(a1)
    stranger = iam.create_user(UserName=jane)["User"]  # someone else, same name
    with _store(tmp_path) as store:
        (snapshot,) = store.retired.user_snapshots(store.migrations.find_migration("wave-1"))
    clean.control.reset_calls()

    with pytest.raises(ApplyRefused) as refused:
        restore(spec, f"{a1}/{jane}")

    message = str(refused.value)
    assert stranger["UserId"] in message and snapshot.user_id in message
    assert "nothing was changed" in message
    assert _mutations(clean) == {}
    state = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    assert state["inline"] == state["attached"] == state["groups"] == []
    assert iam.list_user_tags(UserName=jane)["Tags"] == []
    runs = [r for r in Migration.call(list_runs, spec) if r["kind"] == "restore"]
    assert [r["status"] for r in runs] == ["failed"]  # recorded, visible in iamc runs


def test_restore_rebuilds_a_user_whose_deletion_stopped_before_delete_user(
    clean, retire_kit, tmp_path: Path
):
    kit = retire_kit
    prefix, jane, spec, plan_id = _disabled_jane(clean, kit, tmp_path)
    a1 = clean.accounts[0]
    before = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    user_id = clean.member_iam(a1).get_user(UserName=jane)["User"]["UserId"]
    with pytest.raises(InjectedCrash):
        apply_plan(
            spec,
            plan_id,
            "delete",
            fault=(_delete_action(spec, plan_id, "delete-user"), AFTER_INTENT),
            clock=later,
        )
    stripped = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    assert stripped["inline"] == stripped["attached"] == stripped["groups"] == []

    (result,) = restore(spec, f"{a1}/{jane}")["users"]

    state = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    assert _restorable(state) == _restorable(before)
    assert clean.member_iam(a1).get_user(UserName=jane)["User"]["UserId"] == user_id
    assert result["user_id"] == user_id and result["restored"]
    cannot = "\n".join(result["cannot"])
    assert "access key" in cannot and "console password" in cannot  # deleted: gone for good
    assert "new unique id" not in cannot  # same id: resource policies still name it

    # The stopped delete run, resumed, must not finish deleting what was brought back.
    run_id = [r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "apply"][-1]
    with pytest.raises(ApplyFailed, match="restored while its deletion was unfinished"):
        apply_plan(spec, plan_id, "delete", resume_run_id=run_id, clock=later)
    assert _restorable(kit.iam_state(clean, prefix)[f"{a1}/{jane}"]) == _restorable(before)


def test_changes_made_while_a_delete_was_stopped_are_snapshotted_and_restored(
    clean, retire_kit, tmp_path: Path
):
    kit = retire_kit
    prefix, jane, spec, plan_id = _disabled_jane(clean, kit, tmp_path)
    a1 = clean.accounts[0]
    iam = clean.member_iam(a1)
    first_teardown = _delete_action(spec, plan_id, "delete-login-profile")
    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, "delete", fault=(first_teardown, AFTER_INTENT), clock=later)
    # While the run is stopped, someone adds a group and an inline policy.
    iam.create_group(GroupName=f"{prefix}late")
    iam.add_user_to_group(GroupName=f"{prefix}late", UserName=jane)
    iam.put_user_policy(UserName=jane, PolicyName="late", PolicyDocument=json.dumps(DOC))
    before = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    run_id = [r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "apply"][-1]

    summary = apply_plan(spec, plan_id, "delete", resume_run_id=run_id, clock=later)

    assert summary["failed"] == summary["pending"] == 0, summary
    assert kit.iam_state(clean, prefix) == {}
    with _store(tmp_path) as store:
        snapshots = store.retired.user_snapshots(store.migrations.find_migration("wave-1"))
    assert len(snapshots) == 2  # the first one is kept; the newer one has the changes
    assert f"{prefix}late" not in snapshots[0].content["groups"]
    assert f"{prefix}late" in snapshots[1].content["groups"]
    assert snapshots[1].content["console_password"]["existed"]  # its teardown had begun

    restore(spec, f"{a1}/{jane}")

    state = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    assert _restorable(state) == _restorable(before)
    assert "late" in state["inline"] and f"{prefix}late" in state["groups"]


def test_a_resume_with_nothing_changed_keeps_one_snapshot(clean, retire_kit, tmp_path: Path):
    kit = retire_kit
    _, jane, spec, plan_id = _disabled_jane(clean, kit, tmp_path)
    crash_at = _delete_action(spec, plan_id, "detach-managed-policy")
    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, "delete", fault=(crash_at, AFTER_CALL), clock=later)
    run_id = [r["id"] for r in Migration.call(list_runs, spec) if r["kind"] == "apply"][-1]

    apply_plan(spec, plan_id, "delete", resume_run_id=run_id, clock=later)

    with _store(tmp_path) as store:
        snapshots = store.retired.user_snapshots(store.migrations.find_migration("wave-1"))
    # Half torn down when read again: what the teardown removed is not a change.
    assert [s.user_name for s in snapshots] == [jane]


@pytest.mark.parametrize(
    ("kind", "point", "how"),
    [
        ("restore-user", AFTER_CALL, "same command"),
        ("restore-ssh-key", AFTER_CALL, "iamc resume"),
        ("restore-group", AFTER_INTENT, "iamc resume"),
    ],
)
def test_a_restore_cut_off_half_way_resumes_to_the_snapshot_state_sending_nothing_twice(
    clean, retire_kit, tmp_path: Path, kind: str, point: str, how: str
):
    kit = retire_kit
    prefix, jane, spec, plan_id = _disabled_jane(clean, kit, tmp_path)
    a1 = clean.accounts[0]
    before = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    apply_plan(spec, plan_id, "delete", clock=later)
    clean.control.reset_calls()
    with _store(tmp_path) as store:
        (snapshot,) = store.retired.user_snapshots(store.migrations.find_migration("wave-1"))
        first_run = max(r.id for r in store.runs.list_runs()) + 1  # the restore's run id
    from tasks.user_restore import restore_actions

    victim = next(a.id for a in restore_actions(first_run, a1, snapshot.content) if a.kind == kind)

    with pytest.raises(InjectedCrash):
        restore(spec, f"{a1}/{jane}", fault=(victim, point))
    (crashed,) = [r for r in Migration.call(list_runs, spec) if r["kind"] == "restore"]
    assert crashed["id"] == first_run and crashed["status"] != "succeeded"

    if how == "same command":
        summary = restore(spec, f"{a1}/{jane}")
    else:
        summary = resume(spec, crashed["id"])

    assert summary["run_id"] == crashed["id"]
    assert [r["status"] for r in Migration.call(list_runs, spec) if r["kind"] == "restore"] == [
        "succeeded"
    ]
    state = kit.iam_state(clean, prefix)[f"{a1}/{jane}"]
    assert _restorable(state) == _restorable(before)
    assert clean.member_iam(a1).list_user_tags(UserName=jane)["Tags"] == [
        {"Key": "team", "Value": "payments"}
    ]
    sent = _mutations(clean)
    for operation in (
        "CreateUser",
        "PutUserPolicy",
        "AttachUserPolicy",
        "AddUserToGroup",
        "UploadSSHPublicKey",
        "UploadSigningCertificate",
    ):
        assert sent.get(f"iam:{operation}") == 1, (operation, sent)
    assert "iam:CreateAccessKey" not in sent


def test_restore_waits_for_a_delete_of_the_same_plan(clean, retire_kit, tmp_path: Path):
    kit = retire_kit
    prefix, jane, spec, plan_id = _disabled_jane(clean, kit, tmp_path)
    apply_plan(spec, plan_id, "delete", clock=later)
    a1 = clean.accounts[0]

    held = f"plan {plan_id} stage delete is being changed"
    with (
        _store(tmp_path) as store,
        stage_lease(store, plan_id, "delete"),
        pytest.raises(ApplyRefused, match=held),
    ):
        restore(spec, f"{a1}/{jane}")

    assert kit.iam_state(clean, prefix) == {}
