"""A workload user replaced with a role is disabled only once its owner has switched.

``disable`` re-proves live, before the user's first change in every run, that the workload's
keys have been quiet for ``[decommission] inactive_days`` or that its replacement role was
used after every key's last use (``stages.disable.workload_cut_over``); otherwise it refuses
the user naming the key's last use. From there disable -> bake -> delete applies as for anyone.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.errors import ApplyFailed
from domain.keys import mask_key_id
from domain.plan import Outcome, PlanAction, Stage
from domain.planning import PlanInputs, build_plan
from domain.records import Account
from domain.synthesis import SynthesisResult
from domain.teardown import QUARANTINE_POLICY_NAME
from domain.workloads import ROLE_PATH, replacement_role_name
from engine.apply import apply_plan
from engine.approvals import record_decision
from engine.migration import Migration
from stages import delete, disable
from state import Store
from tasks.iam_users import ClassificationRules, inventory_account

NOW = datetime.now(UTC)
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _after_bake() -> datetime:
    return NOW + timedelta(days=15)


def _spec(tmp_path: Path, inactive_days: int) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        f"[decommission]\nbake_days = 14\ninactive_days = {inactive_days}\n"
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
    )
    return spec


def _workload_plan(
    world: Any, tmp_path: Path, account_id: str, user: str, runtime: str = "lambda"
) -> tuple[Path, int]:
    """An approved plan replacing ``user``'s key with a role: the replace stage's role action
    (journaled done, its role created), then disable and delete as the stages plan them."""
    spec = _spec(tmp_path, inactive_days=30)
    inventories = []
    for account in world.accounts:
        found = inventory_account(
            world.member_session(account), Account(account), ClassificationRules()
        )
        found.users = [u for u in found.users if account == account_id and u.name == user]
        inventories.append(found)
    settings = {"bake_days": 14, "inactive_days": 30}
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration_id, "inventory")
        snapshot = store.snapshots.new_snapshot(migration_id, run)
        for inventory in inventories:
            store.snapshots.save_account_inventory(snapshot, inventory)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        plan = build_plan(
            migration="wave-1",
            inventory_snapshot_id=snapshot,
            mapping_run_id=None,
            inventories=inventories,
            user_mappings=[],
            group_mappings=[],
            synthesis=SynthesisResult(),
            settings=settings,
        )
        # What the replace stage plans for a placed workload (stages/replace.py, built apart).
        (planned,) = [u for u in plan.users if u.user == user]
        planned.outcome, planned.reason = Outcome.REPLACE_WITH_ROLE, f"workload: {runtime}"
        role = replacement_role_name(user)
        create_role = PlanAction(
            id=f"replace:{account_id}:{user}:create-workload-role",
            stage=Stage("replace"),
            kind="create-workload-role",
            account_id=account_id,
            target=user,
            target_fingerprint=planned.target_fingerprint,
            params={
                "user": user,
                "role_name": role,
                "role_path": ROLE_PATH,
                "runtime": runtime,
                "trust_policy": TRUST,
                **({"repository": "acme/etl"} if runtime == "github-actions" else {}),
            },
        )
        record = next(u for u in inventories[world.accounts.index(account_id)].users)
        inputs = PlanInputs(
            users=[planned],
            records={(account_id, user): record},
            settings=settings,
            prerequisites={(account_id, user): [create_role.id]},
        )
        plan.actions = [create_role, *disable.plan_actions(inputs), *delete.plan_actions(inputs)]
        plan_run = store.runs.start_run(migration_id, "plan")
        plan_id, _ = store.plans.save_plan(
            migration_id, plan_run, plan.content_hash(), plan.content(), len(plan.blocking)
        )
        store.runs.finish_run(plan_run, "succeeded")
        # The replace stage created the role (its run, journaled done).
        world.member_iam(account_id).create_role(
            RoleName=role, Path=ROLE_PATH, AssumeRolePolicyDocument=json.dumps(TRUST)
        )
        replace_run = store.runs.start_run(
            migration_id, "apply", {"plan_id": plan_id, "stage": "replace"}
        )
        store.journal.journal_intent(
            run_id=replace_run,
            plan_id=plan_id,
            stage="replace",
            action_id=create_role.id,
            kind=create_role.kind,
            account_id=account_id,
            intent={"action": {"target": user}},
        )
        store.journal.journal_finish(
            plan_id, create_role.id, "succeeded", outcome={"role_name": role}
        )
        store.runs.finish_run(replace_run, "succeeded")
    with Migration.open(spec) as mig:
        for stage in ("disable", "delete"):
            record_decision(
                mig,
                plan_id,
                approver="cab",
                ticket="CHG-24",
                stage=stage,
                expected_hash=plan.content_hash(),
                deletes=1 if stage == "delete" else None,
            )
    return spec, plan_id


def _iam_backend(account_id: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id]["aws"]


def _key_used(account_id: str, key_id: str, when: datetime) -> None:
    from moto.iam.models import AccessKeyLastUsed

    _iam_backend(account_id).access_keys[key_id].last_used = AccessKeyLastUsed(
        timestamp=when, service="s3", region="us-east-1"
    )


def _role_used(account_id: str, role: str, when: datetime) -> None:
    found = _iam_backend(account_id).get_role(role)
    found.last_used, found.last_used_region = when, "us-east-1"


def _workload(world: Any, retire_kit: Any, tmp_path: Path) -> tuple[str, str, str, Path, int]:
    a1 = world.accounts[0]
    user = f"w{uuid.uuid4().hex[:6]}-etl"
    made = retire_kit.seed_user(world, a1, user, keys=1)
    key_id = made["keys"][0]["AccessKeyId"]
    spec, plan_id = _workload_plan(world, tmp_path, a1, user)
    return a1, user, key_id, spec, plan_id


def _disabled(world: Any, account_id: str, user: str) -> bool:
    iam = world.member_iam(account_id)
    keys = [k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    quarantined = QUARANTINE_POLICY_NAME in iam.list_user_policies(UserName=user)["PolicyNames"]
    return quarantined and keys == ["Inactive"]


def _untouched(world: Any, account_id: str, user: str) -> bool:
    iam = world.member_iam(account_id)
    keys = [k["Status"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]]
    return keys == ["Active"] and iam.list_user_policies(UserName=user)["PolicyNames"] == []


def _apply_runs(tmp_path: Path) -> list[int]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return [r.id for r in store.runs.list_runs() if r.kind == "apply"]


def test_the_disable_plan_of_a_workload_waits_for_its_role(clean, retire_kit, tmp_path: Path):
    a1, user, _, _, plan_id = _workload(clean, retire_kit, tmp_path)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        from domain.plan import Plan
        from engine.reports import get_plan_info

        plan = Plan.from_content(get_plan_info(store, "wave-1", plan_id).content)
    role_action = f"replace:{a1}:{user}:create-workload-role"
    disables = [a for a in plan.actions if a.stage == Stage.DISABLE]
    assert {a.kind for a in disables} == {"attach-quarantine-policy", "deactivate-access-key"}
    assert all(a.depends_on == [role_action] for a in disables)
    assert any(a.stage == Stage.DELETE and a.target == user for a in plan.actions)


def test_disable_refuses_a_workload_whose_key_is_still_used_and_names_the_last_use(
    clean, retire_kit, tmp_path: Path
):
    a1, user, key_id, spec, plan_id = _workload(clean, retire_kit, tmp_path)
    yesterday = NOW - timedelta(days=1)
    _key_used(a1, key_id, yesterday)

    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable")

    message = str(err.value)
    assert f"refused {a1}/{user}: workload not cut over: key {mask_key_id(key_id)} last used " in (
        message
    )
    assert f"{yesterday.date().isoformat()} (s3, us-east-1), 1 day ago" in message
    assert f"its role {replacement_role_name(user)} has not been used" in message
    assert "iamc workloads -c" in message
    assert key_id not in message, "a whole key id in what people read"
    assert _untouched(clean, a1, user)


def test_a_resumed_disable_re_checks_live_and_goes_on_once_the_role_is_used_after_the_key(
    clean, retire_kit, tmp_path: Path
):
    a1, user, key_id, spec, plan_id = _workload(clean, retire_kit, tmp_path)
    role = replacement_role_name(user)
    _key_used(a1, key_id, NOW - timedelta(days=1))
    # The role was used, but before the key's last use: something still holds the key.
    _role_used(a1, role, NOW - timedelta(days=2))
    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable")
    assert f"its role {role} was last used" in str(err.value) and "before the key" in str(err.value)
    assert _untouched(clean, a1, user)
    refused_run = _apply_runs(tmp_path)[-1]

    # The owner switched: the role is used after the key's last use. The resume reads it live.
    _role_used(a1, role, NOW - timedelta(hours=1))
    apply_plan(spec, plan_id, "disable", resume_run_id=refused_run)
    assert _disabled(clean, a1, user)


def test_a_resume_refuses_again_when_the_key_is_used_after_the_role(
    clean, retire_kit, tmp_path: Path
):
    a1, user, key_id, spec, plan_id = _workload(clean, retire_kit, tmp_path)
    role = replacement_role_name(user)
    _key_used(a1, key_id, NOW - timedelta(days=1))
    with pytest.raises(ApplyFailed):
        apply_plan(spec, plan_id, "disable")
    refused_run = _apply_runs(tmp_path)[-1]
    # The role got used, and then the key again (a second runtime nobody switched).
    _role_used(a1, role, NOW - timedelta(hours=3))
    _key_used(a1, key_id, NOW - timedelta(hours=1))
    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "disable", resume_run_id=refused_run)
    assert "workload not cut over" in str(err.value) and "today" in str(err.value)
    assert _untouched(clean, a1, user)


def test_a_workload_whose_key_is_quiet_past_inactive_days_is_disabled_then_deleted(
    clean, retire_kit, tmp_path: Path
):
    a1, user, key_id, spec, plan_id = _workload(clean, retire_kit, tmp_path)
    _key_used(a1, key_id, NOW - timedelta(days=31))  # inactive_days = 30; the role never used

    apply_plan(spec, plan_id, "disable")
    assert _disabled(clean, a1, user)

    apply_plan(spec, plan_id, "delete", clock=_after_bake)
    names = {u["UserName"] for u in clean.member_iam(a1).list_users()["Users"]}
    assert user not in names
    # The role the workload now uses stays: deleting the user never touches it.
    assert clean.member_iam(a1).get_role(RoleName=replacement_role_name(user))["Role"]


def test_delete_refuses_a_workload_whose_inactive_key_is_used_during_the_bake(
    clean, retire_kit, tmp_path: Path
):
    a1, user, key_id, spec, plan_id = _workload(clean, retire_kit, tmp_path)
    _key_used(a1, key_id, NOW - timedelta(days=2))
    _role_used(a1, replacement_role_name(user), NOW - timedelta(days=1))
    apply_plan(spec, plan_id, "disable")
    assert _disabled(clean, a1, user)

    # A forgotten copy of the key tries again after the disable.
    _key_used(a1, key_id, datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(ApplyFailed) as err:
        apply_plan(spec, plan_id, "delete", clock=_after_bake)
    assert f"refused {a1}/{user}: in-use: " in str(err.value)
    names = {u["UserName"] for u in clean.member_iam(a1).list_users()["Users"]}
    assert user in names


# -- the owners' hand-off ------------------------------------------------------------------------


def test_notify_writes_each_owner_the_workflow_snippet_with_the_role_and_no_key(
    clean, retire_kit, tmp_path: Path
):
    from domain.records import IdentityUser
    from flows.notify import notify_flow

    a1 = clean.accounts[0]
    user = f"w{uuid.uuid4().hex[:6]}-deploy"
    made = retire_kit.seed_user(clean, a1, user, keys=1, tags={"owner": "team-data@example.com"})
    key_id, secret = made["keys"][0]["AccessKeyId"], made["keys"][0]["SecretAccessKey"]
    _key_used(a1, key_id, NOW - timedelta(days=1))
    spec, plan_id = _workload_plan(clean, tmp_path, a1, user, runtime="github-actions")
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.find_migration("wave-1")
        snapshot = store.snapshots.latest_snapshot(migration_id)
        run_id = store.runs.start_run(migration_id, "mapping", {"spec": str(spec)})
        people = [IdentityUser(uid, n, n, [n]) for n, uid in clean.users.items()]
        store.identity.save_mapping(run_id, snapshot.id, people, [], [], [])
        store.runs.finish_run(run_id, "succeeded")

    state = notify_flow(str(spec), plan_id, return_state=True)

    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["workloads"] == 1 and summary["workload_owners"] == 1
    folder = tmp_path / "notices" / str(plan_id) / "workloads"
    text = (folder / "team-data@example.com.md").read_text()
    role_arn = f"arn:aws:iam::{a1}:role{ROLE_PATH}{replacement_role_name(user)}"
    assert f"role-to-assume: {role_arn}" in text
    assert "id-token: write" in text and "aws-actions/configure-aws-credentials@v4" in text
    assert "AWS_SECRET_ACCESS_KEY" in text and "`acme/etl`" in text
    assert mask_key_id(key_id) in text
    csv_text = (folder / "workloads.csv").read_text()
    assert role_arn in csv_text and "team-data@example.com" in csv_text
    for written in (text, csv_text):
        assert key_id not in written, "a whole key id in the hand-off"
        assert secret not in written, "a secret in the hand-off"
