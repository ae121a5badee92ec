"""A central-roles plan applied through the engine against the sandbox: the central account's
group, assume policy and membership first, the member role per account, a crash and resume,
the refusal when a planned central person is gone, and the rollback.

The plan's actions are built by hand as ``domain.central_access`` plans them (ISSUE26).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from domain.access import SynthesisResult
from domain.central_roles import (
    access_group_name,
    assume_policy,
    assume_policy_name,
    member_role_name,
    role_arn,
    trust_policy,
)
from domain.central_spec import Central
from domain.errors import ApplyRefused
from domain.plan import PlanAction, Stage, sha256_of
from domain.planning import build_plan
from engine.apply import apply_plan
from engine.approvals import record_decision
from engine.executor import InjectedCrash
from engine.migration import Migration
from engine.rollback import rollback_plan
from flows.apply import resume
from state import Store
from tasks.member_roles import read_role_state

MIGRATION = "wave-1"


def _actions(central: Central, member: str, people: list[str], policy_arn: str) -> list[PlanAction]:
    c = central.account
    name, group = member_role_name(central, "Readers"), access_group_name(central, "Readers")
    principals = [f"arn:aws:iam::{c}:user/people/{p}" for p in people]
    params = {
        "role_name": name,
        "path": central.role_path,
        "access": "Readers",
        "fingerprint": "f-readers",
        "description": "iam-centralize: Readers",
        "trust_policy": trust_policy(principals, central),
        "principals": principals,
        "max_session_duration": 3600,
        "permissions_boundary_arn": None,
        "managed_policy_arns": [policy_arn],
        "inline_policy": None,
        "inline_policy_name": "iamc-access",
        "tags": [
            {"Key": "iamc:migration", "Value": MIGRATION},
            {"Key": "iamc:access", "Value": "Readers"},
            {"Key": "iamc:created-by", "Value": "iam-centralize"},
            {"Key": "iamc:central-account", "Value": c},
        ],
    }
    role = PlanAction(
        f"provision:create-member-role:{member}:{name}",
        Stage.PROVISION,
        "create-member-role",
        member,
        name,
        sha256_of(params),
        params,
    )
    create_group = PlanAction(
        f"provision:create-access-group:{c}:{group}",
        Stage.PROVISION,
        "create-access-group",
        c,
        group,
        "",
        {"group_name": group, "path": central.role_path, "access": "Readers"},
    )
    policy = assume_policy_name(central, "Readers")
    arns = [role_arn(member, central, "Readers")]
    put = PlanAction(
        f"provision:put-access-policy:{c}:group:{group}:{policy}",
        Stage.PROVISION,
        "put-access-policy",
        c,
        policy,
        "",
        {
            "principal_type": "group",
            "principal_name": group,
            "policy_name": policy,
            "document": assume_policy(arns, central),
            "role_arns": arns,
            "access": "Readers",
        },
        depends_on=[create_group.id],
    )
    members = [
        PlanAction(
            f"provision:add-group-member:{c}:{group}:{p}",
            Stage.PROVISION,
            "add-group-member",
            c,
            p,
            "",
            {"group_name": group, "user_name": p, "access": "Readers"},
            depends_on=[create_group.id],
        )
        for p in people
    ]
    return [role, create_group, put, *members]


def _plan(world, tmp_path: Path, people: list[str]) -> tuple[Path, int, Central, str]:
    central_account, member = world.accounts
    central = Central(account=central_account)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "{MIGRATION}"\nstate = "sqlite:///state.db"\ntarget = "central-roles"\n'
        f'[central]\naccount = "{central_account}"\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
    )
    policy_arn = f"arn:aws:iam::{member}:policy/iamc/team-read"
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.ensure_migration(MIGRATION, {})
        run = store.runs.start_run(migration_id, "inventory")
        snapshot = store.snapshots.new_snapshot(migration_id, run)
        store.snapshots.complete_snapshot(snapshot)
        store.runs.finish_run(run, "succeeded")
        plan = build_plan(
            migration=MIGRATION,
            inventory_snapshot_id=snapshot,
            mapping_run_id=None,
            inventories=[],
            user_mappings=[],
            group_mappings=[],
            synthesis=SynthesisResult(permission_sets=[], assignments=[]),
            settings={"target": "central-roles", "central": central.model_dump()},
        )
        plan = replace(plan, actions=_actions(central, member, people, policy_arn))
        plan_run = store.runs.start_run(migration_id, "plan")
        plan_id, _ = store.plans.save_plan(
            migration_id, plan_run, plan.content_hash(), plan.content(), len(plan.blocking)
        )
        store.runs.finish_run(plan_run, "succeeded")
    with Migration.open(spec) as mig:
        record_decision(
            mig,
            plan_id,
            approver="cab",
            ticket="CAB-1",
            stage="provision",
            expected_hash=plan.content_hash(),
        )
    return spec, plan_id, central, member


@pytest.fixture
def people(clean):
    """jane and joe as the central account's IAM users (made once per sandbox)."""
    iam = clean.member_iam(clean.accounts[0])
    for name in ("jane", "joe"):
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_user(UserName=name, Path="/people/")
    return ["jane", "joe"]


def _central_state(world, central: Central) -> dict:
    iam = world.member_iam(central.account)
    groups = {g["GroupName"] for g in iam.list_groups()["Groups"]}
    group = access_group_name(central, "Readers")
    if group not in groups:
        return {}
    return {
        "members": sorted(u["UserName"] for u in iam.get_group(GroupName=group)["Users"]),
        "policies": iam.list_group_policies(GroupName=group)["PolicyNames"],
    }


def test_a_central_roles_plan_is_applied_resumed_after_a_crash_and_rolled_back(
    clean, people, tmp_path
):
    spec, plan_id, central, member = _plan(clean, tmp_path, people)
    role_id = f"provision:create-member-role:{member}:iamc-Readers"

    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, fault=(role_id, "after-intent"))
    with Migration.open(spec) as mig:
        run_id = mig.store.runs.list_runs(mig.store.migrations.ensure_migration(MIGRATION, {}))[
            -1
        ].id
    summary = resume(spec, run_id)

    assert summary["succeeded"] == 5 and summary["failed"] == 0
    assert _central_state(clean, central) == {
        "members": ["jane", "joe"],
        "policies": ["iamc-assume-Readers"],
    }
    member_iam = clean.member_iam(member)
    state = read_role_state(member_iam, "iamc-Readers")
    assert state is not None
    assert state["trust_policy"]["Statement"][0]["Principal"]["AWS"] == [
        f"arn:aws:iam::{central.account}:user/people/{p}" for p in people
    ]
    assert state["managed_policy_arns"] == [f"arn:aws:iam::{member}:policy/iamc/team-read"]
    assert [r["RoleName"] for r in member_iam.list_roles(PathPrefix="/iamc/")["Roles"]] == [
        "iamc-Readers"
    ]

    rollback_plan(spec, run_id)
    assert _central_state(clean, central) == {}
    assert read_role_state(member_iam, "iamc-Readers") is None
    # The people themselves are the central account's: untouched.
    central_users = clean.member_iam(central.account).list_users()["Users"]
    assert {"jane", "joe"} <= {u["UserName"] for u in central_users}


def test_a_plan_naming_a_central_person_who_is_gone_is_refused_before_any_change(
    clean, people, tmp_path
):
    spec, plan_id, central, member = _plan(clean, tmp_path, [*people, "ghost"])

    with pytest.raises(ApplyRefused, match=r"central user ghost .* no longer exists"):
        apply_plan(spec, plan_id)
    assert _central_state(clean, central) == {}
    assert read_role_state(clean.member_iam(member), "iamc-Readers") is None


def test_someone_elses_role_of_a_planned_name_refuses_the_run_before_any_central_change(
    clean, people, tmp_path
):
    spec, plan_id, central, member = _plan(clean, tmp_path, people)
    member_iam = clean.member_iam(member)
    # Not this migration's: trusts the whole identity account, permissions nobody reviewed.
    root_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{central.account}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    member_iam.create_role(
        RoleName="iamc-Readers", Path="/iamc/", AssumeRolePolicyDocument=json.dumps(root_trust)
    )
    try:
        with pytest.raises(
            ApplyRefused,
            match=rf"account {member}: role iamc-Readers .* was not made by this migration",
        ):
            apply_plan(spec, plan_id)
        # No CreateGroup, so no PutGroupPolicy or AddUserToGroup: nobody may switch into it.
        assert _central_state(clean, central) == {}
        role = read_role_state(member_iam, "iamc-Readers")
        assert role is not None and role["trust_policy"] == root_trust
        assert "iamc:migration" not in role["tags"]
    finally:
        member_iam.delete_role(RoleName="iamc-Readers")
