"""The stages that take access away re-prove every user live, in a first run and a resume alike.

Each sequence here was reproduced against main before the checks existed (issue 21): a resumed
delete that skipped its checks, protection added after the approval, a namesake created since
the plan, a person whose new access was removed before their disable, two stages of one plan
running at once, and a lease lost to a database error.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from console.artifacts import status_table
from domain.errors import ApplyFailed, ApplyRefused
from engine import lease as lease_module
from engine.apply import apply_plan
from engine.executor import InjectedCrash
from engine.lease import LeaseLost, stage_lease
from engine.migration import Migration
from engine.rollback import rollback_plan
from engine.runs import run_status
from stages import retire
from state import Store
from state.runs import LeaseRepository

LATER = datetime.now(UTC) + timedelta(days=15)


def later() -> datetime:
    return LATER


def _prefix() -> str:
    return f"l{uuid.uuid4().hex[:6]}-"


def _store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'state.db'}")


def _runs(tmp_path: Path, kind: str = "apply") -> list[int]:
    with _store(tmp_path) as store:
        return [r.id for r in store.runs.list_runs() if r.kind == kind]


def _key_statuses(world, account_id: str, user: str) -> list[str]:
    iam = world.member_iam(account_id)
    return [k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]


def _user_names(world, account_id: str) -> set[str]:
    return {u["UserName"] for u in world.member_iam(account_id).list_users()["Users"]}


def _protect_in_spec(spec: Path, glob: str) -> None:
    first, rest = spec.read_text().split("\n", 1)
    spec.write_text(f"{first}\nprotected_users = [{glob!r}]\n{rest}")


def _jane_and_bob(world, kit, tmp_path: Path) -> tuple[str, str, Path, int]:
    """jane (account 1) and bob (account 2), each with one active key, in an approved plan."""
    prefix = _prefix()
    a1, a2 = world.accounts
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    kit.seed_user(world, a1, jane, keys=1)
    kit.seed_user(world, a2, bob, keys=1)
    spec, plan_id = kit.write_retire_plan(world, tmp_path, prefix)
    return jane, bob, spec, plan_id


# -- 1. a resumed delete re-checks: a user brought back meanwhile is not deleted -----------------


def test_a_resumed_delete_refuses_a_user_whose_disable_was_rolled_back_after_the_crash(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    jane, bob = f"{prefix}jane", f"{prefix}bob"
    kit.seed_user(clean, a1, jane, keys=1, password=True)
    kit.seed_user(clean, a2, bob, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    disable_run = _runs(tmp_path)[-1]
    first_step = f"delete:{a1}:{jane}:01-delete-login-profile"

    # The delete run dies right after the intent of jane's first teardown step.
    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, "delete", clock=later, fault=(first_step, "after-intent"))
    delete_run = _runs(tmp_path)[-1]
    assert jane in _user_names(clean, a1)

    # The operator brings jane back; then someone resumes the delete run for the others.
    rollback_plan(spec, disable_run, user=f"{a1}/{jane}")
    assert _key_statuses(clean, a1, jane) == ["Active"]
    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", resume_run_id=delete_run, clock=later)

    assert f"refused {a1}/{jane}: " in str(err.value)
    assert "rolled back" in str(err.value)
    assert jane in _user_names(clean, a1), "jane was deleted although she had been brought back"
    assert _key_statuses(clean, a1, jane) == ["Active"]
    assert bob not in _user_names(clean, a2), "the other user's deletion went on"


def test_a_disable_rollback_and_a_delete_of_one_plan_never_run_at_once(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    a1, _ = clean.accounts
    jane = f"{prefix}jane"
    kit.seed_user(clean, a1, jane, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    apply_plan(spec, plan_id, "disable")
    disable_run = _runs(tmp_path)[-1]

    refused_rollback = pytest.raises(ApplyRefused, match=f"plan {plan_id} stage disable is being")
    with _store(tmp_path) as store:
        # A delete run of this plan is at work: a rollback of its disable waits.
        with stage_lease(store, plan_id, "delete"), refused_rollback:
            rollback_plan(spec, disable_run, user=f"{a1}/{jane}")
        # A rollback of its disable is at work: the delete waits.
        with stage_lease(store, plan_id, "disable"), pytest.raises(ApplyRefused, match="being"):
            apply_plan(spec, plan_id, "delete", clock=later)
    assert _key_statuses(clean, a1, jane) == ["Inactive"]
    assert jane in _user_names(clean, a1)


# -- 2. protection is decided live, not at plan time -------------------------------------------


def test_a_user_tagged_protected_after_the_approval_is_not_deleted(
    clean, retire_kit, tmp_path: Path
):
    a1, a2 = clean.accounts
    jane, bob, spec, plan_id = _jane_and_bob(clean, retire_kit, tmp_path)
    apply_plan(spec, plan_id, "disable")
    clean.member_iam(a1).tag_user(UserName=jane, Tags=[{"Key": "iamc:protected", "Value": "TRUE"}])

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", clock=later)

    assert f"refused {a1}/{jane}: protected: tagged iamc:protected=true now" in str(err.value)
    assert jane in _user_names(clean, a1)
    assert bob not in _user_names(clean, a2)
    # The reason shows where operators look: iamc status and the run's table in the UI.
    status = Migration.call(run_status, spec, _runs(tmp_path)[-1])
    assert status["stage"][a1]["refused"] == 1
    assert [r for r in status["stage"][a1]["refusals"] if r.startswith(f"{jane}: refused: ")] == [
        f"{jane}: refused: protected: tagged iamc:protected=true now; iamc never touches it"
    ]
    assert not any("refused" in e for e in status["stage"][a1]["errors"])  # not AWS's errors
    rows, description, _ = Migration.call(status_table, str(spec), _runs(tmp_path)[-1])
    row = next(r for r in rows if r["account"] == a1)
    assert row["state"] == "REFUSED 1 user(s)" and "protected: tagged" in row["reasons"]
    assert "1 user(s) refused by the live checks" in description


def test_a_user_the_spec_protects_after_the_approval_is_neither_disabled_nor_deleted(
    clean, retire_kit, tmp_path: Path
):
    a1, a2 = clean.accounts
    jane, bob, spec, plan_id = _jane_and_bob(clean, retire_kit, tmp_path)
    _protect_in_spec(spec, jane.removesuffix("jane") + "j*")

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable")

    assert f"refused {a1}/{jane}: protected: the spec's protected_users has" in str(err.value)
    assert _key_statuses(clean, a1, jane) == ["Active"]
    assert clean.member_iam(a1).list_user_policies(UserName=jane)["PolicyNames"] == []
    assert _key_statuses(clean, a2, bob) == ["Inactive"]


# -- 3. the unique id, not the name, says who is changed ---------------------------------------


def _replace_with_namesake(world, account_id: str, name: str) -> str:
    """Delete the user by hand and create another person under the same name (console only)."""
    iam = world.member_iam(account_id)
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
        iam.delete_user_policy(UserName=name, PolicyName=policy)
    iam.delete_user(UserName=name)
    new_id = iam.create_user(UserName=name, Path="/people/")["User"]["UserId"]
    iam.create_login_profile(UserName=name, Password="Another-Passw0rd!x")
    return new_id


def test_a_namesake_created_since_the_plan_is_neither_quarantined_nor_deleted(
    clean, retire_kit, tmp_path: Path
):
    a1, a2 = clean.accounts
    jane, bob, spec, plan_id = _jane_and_bob(clean, retire_kit, tmp_path)
    new_jane = _replace_with_namesake(clean, a1, jane)

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable")
    assert f"refused {a1}/{jane}: {jane} is now another user (unique id {new_jane}" in str(
        err.value
    )
    iam = clean.member_iam(a1)
    assert iam.list_user_policies(UserName=jane)["PolicyNames"] == [], "the namesake quarantined"

    # Bob was disabled as planned; now he too is replaced before the delete stage.
    new_bob = _replace_with_namesake(clean, a2, bob)
    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", clock=later)
    assert f"refused {a2}/{bob}: {bob} is now another user (unique id {new_bob}" in str(err.value)
    assert clean.member_iam(a2).get_user(UserName=bob)["User"]["UserId"] == new_bob
    assert iam.get_user(UserName=jane)["User"]["UserId"] == new_jane


# -- 6. disable checks that the person's new access still exists -------------------------------


def test_disable_refuses_a_person_whose_assignment_was_removed_after_provisioning(
    clean, retire_kit, tmp_path: Path
):
    kit, prefix = retire_kit, _prefix()
    a1, _ = clean.accounts
    jane = f"{prefix}jane"
    kit.seed_user(clean, a1, jane, keys=1, password=True)
    spec, plan_id = kit.write_migrate_plan(clean, tmp_path, [(a1, jane, "alice@example.com")])
    apply_plan(spec, plan_id, "provision")
    sso = clean.client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    sets = sso.list_permission_sets(InstanceArn=instance)["PermissionSets"]
    readers = next(
        arn
        for arn in sets
        if sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)["PermissionSet"][
            "Name"
        ]
        == "Readers"
    )
    # Someone removes the person's new access between provision and disable.
    sso.delete_account_assignment(
        InstanceArn=instance,
        TargetId=a1,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=readers,
        PrincipalType="USER",
        PrincipalId=clean.users["alice@example.com"],
    )

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable")

    assert f"refused {a1}/{jane}: new access missing: " in str(err.value)
    assert "not assigned" in str(err.value)
    assert _key_statuses(clean, a1, jane) == ["Active"], "the person was locked out"
    assert clean.member_iam(a1).list_user_policies(UserName=jane)["PolicyNames"] == []


# -- 7. a lease that can't be renewed stops the run before its next change ---------------------


def test_a_run_that_cannot_renew_its_lease_stops_before_its_next_change(
    clean, retire_kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    kit, prefix = retire_kit, _prefix()
    a1, a2 = clean.accounts
    names = [f"{prefix}u{i}" for i in range(4)]
    for i, name in enumerate(names):
        kit.seed_user(clean, (a1, a2)[i % 2], name, keys=1)
    spec, plan_id = kit.write_retire_plan(clean, tmp_path, prefix)
    monkeypatch.setattr(lease_module, "LOCK_HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(lease_module, "SAFE_FOR", timedelta(seconds=0.3))
    renewals = []

    def broken_heartbeat(self, plan_id, stage, holder):
        renewals.append(stage)
        raise OperationalError("UPDATE stage_locks", {}, Exception("database is locked"))

    monkeypatch.setattr(LeaseRepository, "heartbeat_stage_lock", broken_heartbeat)
    changed = []
    real_run_user = retire._run_user

    def slow_run_user(rt, work, report):
        changed.append(work.key)
        time.sleep(0.5)  # longer than the lease stays safe without a renewal
        return real_run_user(rt, work, report)

    monkeypatch.setattr(retire, "_run_user", slow_run_user)
    monkeypatch.setattr(retire, "USER_CONCURRENCY", 1)
    monkeypatch.setattr(retire, "RETIRE_ACCOUNT_CONCURRENCY", 1)
    monkeypatch.setattr("engine.stage_run.ACCOUNT_CONCURRENCY", 1)

    with pytest.raises(LeaseLost, match="lost the stage lock"):
        apply_plan(spec, plan_id, "disable")

    assert renewals, "the heartbeat never ran"
    disabled = [
        n for i, n in enumerate(names) if _key_statuses(clean, (a1, a2)[i % 2], n) == ["Inactive"]
    ]
    # Each account's first user started before the lease lapsed; nothing after it changed.
    assert len(disabled) < len(names), disabled
    with _store(tmp_path) as store:
        run = store.runs.get_run(_runs(tmp_path)[-1])
    assert run.status == "running", "a run that lost its lease must not record how it ended"


def test_a_lease_taken_over_refuses_at_once_and_a_renewed_one_keeps_acting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    with _store(tmp_path) as store:
        migration = store.migrations.ensure_migration("m", {})
        run = store.runs.start_run(migration, "plan")
        plan_id, _ = store.plans.save_plan(migration, run, "h" * 64, {"actions": []}, 0)
        with stage_lease(store, plan_id, "delete") as lease:
            assert lease.stages == ("disable", "delete")
            lease.renew()
            lease.ensure()  # renewed: may act
            # Another process takes one of the group's leases over (we were presumed dead).
            store.leases.acquire_stage_lock(
                plan_id, "delete", "other:1:x", stale_after=timedelta(0), now=datetime.now(UTC)
            )
            lease.renew()
            with pytest.raises(LeaseLost, match="another process took it over"):
                lease.ensure()


def test_every_stage_declares_its_live_preconditions():
    from domain.plan import Stage
    from domain.stages import stage_names, stages
    from engine.preconditions import preconditions_of

    assert {s.name for s in stages() if s.preconditions is not None} == set(stage_names())
    for stage in (Stage.DISABLE, Stage.DELETE):
        names = [c.name for c in preconditions_of(stage).per_user]
        assert names[:2] == ["same-user", "not-protected"], names
    with pytest.raises(Exception, match="declares no live preconditions"):
        preconditions_of("replace-keys")


def test_a_lease_heartbeat_error_does_not_end_the_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(lease_module, "LOCK_HEARTBEAT_SECONDS", 0.02)
    calls = []
    real = LeaseRepository.heartbeat_stage_lock

    def flaky(self, plan_id, stage, holder):
        calls.append(stage)
        if len(calls) <= 2:
            raise OperationalError("UPDATE", {}, Exception("database is locked"))
        return real(self, plan_id, stage, holder)

    monkeypatch.setattr(LeaseRepository, "heartbeat_stage_lock", flaky)
    with _store(tmp_path) as store:
        migration = store.migrations.ensure_migration("m", {})
        run = store.runs.start_run(migration, "plan")
        plan_id, _ = store.plans.save_plan(migration, run, "h" * 64, {"actions": []}, 0)
        with stage_lease(store, plan_id, "provision") as lease:
            deadline = time.monotonic() + 5
            while len(calls) < 4 and time.monotonic() < deadline:
                threading.Event().wait(0.02)
            lease.ensure()  # renewed again after the errors
    assert len(calls) >= 4, "the heartbeat thread died at the first database error"


def test_provision_is_not_rolled_back_while_the_disable_that_relies_on_it_stands(
    clean, retire_kit, tmp_path: Path
):
    """Undoing a person's new access after their old IAM user was disabled would lock them
    out: the rollback of provision is refused until the disable is rolled back first."""
    kit, prefix = retire_kit, _prefix()
    a1, _ = clean.accounts
    jane = f"{prefix}jane"
    kit.seed_user(clean, a1, jane, keys=1, password=True)
    spec, plan_id = kit.write_migrate_plan(clean, tmp_path, [(a1, jane, "alice@example.com")])
    provision_run = apply_plan(spec, plan_id, "provision")["run_id"]
    disable_run = apply_plan(spec, plan_id, "disable")["run_id"]

    with pytest.raises(ApplyRefused, match=f"roll back run {disable_run} first") as err:
        rollback_plan(spec, provision_run)
    assert "neither their old IAM user nor their new access" in str(err.value)
    assert _key_statuses(clean, a1, jane) == ["Inactive"]

    rollback_plan(spec, disable_run)
    undone = rollback_plan(spec, provision_run)
    assert any("create-assignment" in line for line in undone["undo"])
    assert _key_statuses(clean, a1, jane) == ["Active"]
