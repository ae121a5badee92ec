"""The verify flow of a central-roles plan: per person and role, the table, the run, the failure."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from domain.central_roles import assume_policy, trust_policy
from domain.central_spec import Central
from domain.plan import Outcome, Plan, PlanAction, UserPlan
from domain.stages import Stage
from state import Store
from tests.flows.test_step_containment import _table


def _central_plan(world: Any, tmp_path: Path) -> tuple[Path, int, Central, str, str]:
    """The first sandbox account as the central one: alice's central user, her group, and a
    member role in the second account trusting her; a plan and a journal saying it is done."""
    central_account, member = world.accounts
    tag = uuid.uuid4().hex[:6]
    central = Central(account=central_account, role_prefix=f"v{tag}-")
    role_name = f"{central.role_prefix}team"
    role_arn = f"arn:aws:iam::{member}:role{central.role_path}{role_name}"
    iam = world.member_iam(central_account)
    people = {
        name: iam.create_user(UserName=f"{name}-{tag}")["User"]["Arn"] for name in ("alice", "bob")
    }
    # The trust requires MFA: alice has a device (verify checks she could switch in).
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"alice-{tag}")["VirtualMFADevice"][
        "SerialNumber"
    ]
    iam.enable_mfa_device(
        UserName=f"alice-{tag}",
        SerialNumber=serial,
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )
    iam.create_group(GroupName=role_name)
    iam.put_group_policy(
        GroupName=role_name,
        PolicyName="assume",
        PolicyDocument=json.dumps(assume_policy([role_arn], central)),
    )
    iam.add_user_to_group(GroupName=role_name, UserName=f"alice-{tag}")
    trust = trust_policy([people["alice"]], central)
    world.member_iam(member).create_role(
        RoleName=role_name, Path=central.role_path, AssumeRolePolicyDocument=json.dumps(trust)
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "central"\nstate = "sqlite:///state.db"\ntarget = "central-roles"\n'
        f'[central]\naccount = "{central_account}"\nrole_prefix = "{central.role_prefix}"\n'
        "[aws]\nrate_limits = { iam = 1000 }\n"
    )
    action = PlanAction(
        id=f"provision:create-member-role:{member}:{role_name}",
        stage=Stage.PROVISION,
        kind="create-member-role",
        account_id=member,
        target=role_name,
        target_fingerprint="fp",
        params={
            "role_name": role_name,
            "path": central.role_path,
            "access": "team",
            "trust_policy": trust,
            "principals": [people["alice"]],
        },
    )
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.ensure_migration("central", {})
        run = store.runs.start_run(migration_id, "inventory")
        snapshot = store.snapshots.new_snapshot(migration_id, run)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        plan = Plan(
            migration="central",
            inventory_snapshot_id=snapshot,
            mapping_run_id=None,
            settings={"target": "central-roles"},
            users=[
                UserPlan(
                    member,
                    "alice-old",
                    "human",
                    Outcome.MIGRATE,
                    "mapped",
                    "fp",
                    identity=f"alice-{tag}",
                    permission_sets=["team"],
                )
            ],
            actions=[action],
            permission_sets=[],
            assignments=[
                {
                    "account_id": member,
                    "permission_set_name": "team",
                    "principal_type": "USER",
                    "principal_id": people["alice"],
                    "principal_name": f"alice-{tag}",
                }
            ],
            required_customer_policies=[],
            findings=[],
        )
        plan_run = store.runs.start_run(migration_id, "plan")
        plan_id, _ = store.plans.save_plan(
            migration_id, plan_run, plan.content_hash(), plan.content(), 0
        )
        store.runs.finish_run(plan_run, "succeeded")
        apply_run = store.runs.start_run(migration_id, "apply", {"plan_id": plan_id})
        store.journal.journal_intent(
            run_id=apply_run,
            plan_id=plan_id,
            stage=Stage.PROVISION,
            action_id=action.id,
            kind=action.kind,
            account_id=member,
            intent={"action": {"target": role_name}},
        )
        store.journal.journal_finish(plan_id, action.id, "succeeded")
        store.runs.finish_run(apply_run, "succeeded")
    return spec, plan_id, central, role_name, people["alice"]


def test_verify_of_central_roles_reports_per_role_and_fails_on_a_root_trust(
    clean: Any, tmp_path: Path
) -> None:
    from flows.verify import verify_flow

    spec, plan_id, central, role_name, alice = _central_plan(clean, tmp_path)
    member = clean.accounts[1]

    state = verify_flow(str(spec), plan_id, return_state=True)
    assert state.is_completed(), state.message
    [row] = _table(state.state_details.flow_run_id, "central-verify")
    assert row["result"] == "ok" and row["role"] == role_name and row["access"] == "team"
    assert row["person"].startswith("alice-") and row["old IAM users"] == "alice-old"
    assert "may switch in with MFA" in row["checks"] and "has an MFA device" in row["checks"]
    assert "trust names no root, '*' or foreign principal" in row["checks"]

    # Someone widened the trust to the central account's root: verify fails, naming it.
    root = f"arn:aws:iam::{central.account}:root"
    clean.member_iam(member).update_assume_role_policy(
        RoleName=role_name, PolicyDocument=json.dumps(trust_policy([alice, root], central))
    )
    state = verify_flow(str(spec), plan_id, return_state=True)
    assert state.is_failed()
    assert f"root {root}" in state.message and member in state.message
    [row] = _table(state.state_details.flow_run_id, "central-verify")
    assert row["result"] == "PROBLEM" and "must name only" in row["problems"]
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        runs = store.runs.list_runs(store.migrations.find_migration("central"))
    verify_runs = [r for r in runs if r.kind == "verify"]
    assert [r.status for r in verify_runs] == ["succeeded", "failed"]
    assert verify_runs[-1].summary["problems"] == 1
