"""[permission_sets] boundary in the in-process sandbox: synthesized onto every set, applied to
Identity Center, carried by the provisioned AWSReservedSSO_ roles and checked by ``verify``;
and on the replace stage's workload roles, whose probe sees a boundary changed by hand."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from bench.plans import store_retire_plan
from domain.plan import PlanAction, Stage
from domain.records import Account, MatchStatus, UserMapping
from domain.synthesis import synthesize
from domain.workloads import Confidence, Placement, Runtime, replacement_role_name
from engine.apply import apply_plan
from state import Store
from tasks.iam_roles import CreateWorkloadRole
from tasks.iam_users import ClassificationRules, inventory_account
from tasks.verify_access import SSO_ROLE_PATH

# The flows' world has this customer-managed policy in both member accounts (conftest).
BOUNDARY = {"customer_managed_policy_reference": {"name": "team-read", "path": "/iamc/"}}


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        '[permission_sets]\nboundary = "/iamc/team-read"\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
    )
    return spec


def _inventories(world: Any, prefix: str) -> list[Any]:
    found = []
    for account_id in world.accounts:
        inventory = inventory_account(
            world.member_session(account_id), Account(account_id), ClassificationRules()
        )
        inventory.users = [u for u in inventory.users if u.name.startswith(prefix)]
        found.append(inventory)
    return found


def _sso_role(world: Any, account_id: str) -> str:
    iam = world.member_iam(account_id)
    [role] = [
        r["RoleName"]
        for r in iam.list_roles(PathPrefix=SSO_ROLE_PATH)["Roles"]
        if r["RoleName"].startswith("AWSReservedSSO_")
    ]
    return role


def test_plan_apply_verify_with_a_boundary_and_verify_fails_once_it_is_removed(
    clean, retire_kit, tmp_path: Path
) -> None:
    from flows.verify import verify_flow

    world, prefix = clean, f"b{uuid.uuid4().hex[:5]}-"
    a1, a2 = world.accounts
    retire_kit.seed_user(world, a1, f"{prefix}jane", keys=1, password=True, inline=True)
    retire_kit.seed_user(world, a2, f"{prefix}bob", keys=1, password=True, inline=True)
    inventories = _inventories(world, prefix)
    mappings = [
        UserMapping(
            a1,
            f"{prefix}jane",
            MatchStatus.MATCHED,
            "override",
            world.users["alice@example.com"],
            "alice@example.com",
        ),
        UserMapping(
            a2,
            f"{prefix}bob",
            MatchStatus.MATCHED,
            "override",
            world.users["bob@example.com"],
            "bob@example.com",
        ),
    ]
    synthesis = synthesize(inventories, mappings, [], [], boundary=BOUNDARY)
    [permission_set] = synthesis.permission_sets  # same access: one shared set
    assert permission_set.permissions_boundary == BOUNDARY
    assert {(r.account_id, r.name, r.path) for r in synthesis.required_customer_policies} == {
        (a1, "team-read", "/iamc/"),
        (a2, "team-read", "/iamc/"),
    }
    spec = _spec(tmp_path)
    plan_id = store_retire_plan(
        spec,
        f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        inventories,
        approve_stages=("provision",),
        approver="cab",
        user_mappings=mappings,
        synthesis=synthesis,
        settings={"permissions_boundary": BOUNDARY},
    )
    assert apply_plan(spec, plan_id, "provision", poll=retire_kit.QUICK)["failed"] == 0

    sso = world.client("sso-admin")
    [arn] = sso.list_permission_sets(InstanceArn=world.instance_arn)["PermissionSets"]
    live = sso.get_permissions_boundary_for_permission_set(
        InstanceArn=world.instance_arn, PermissionSetArn=arn
    )["PermissionsBoundary"]
    assert live == {"CustomerManagedPolicyReference": {"Name": "team-read", "Path": "/iamc/"}}
    for account_id in (a1, a2):
        role = world.member_iam(account_id).get_role(RoleName=_sso_role(world, account_id))
        assert role["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == (
            f"arn:aws:iam::{account_id}:policy/iamc/team-read"
        )

    assert verify_flow(str(spec), plan_id, return_state=True).is_completed()

    # Someone removes the boundary from the provisioned role in account 2 by hand.
    role_name = _sso_role(world, a2)
    world.member_iam(a2).delete_role_permissions_boundary(RoleName=role_name)
    state = verify_flow(str(spec), plan_id, return_state=True)
    assert state.is_failed()
    message = str(state.message)
    for part in (a2, permission_set.name, "none", f"arn:aws:iam::{a2}:policy/iamc/team-read"):
        assert part in message, message


class _Ctx:
    """Only what CreateWorkloadRole.probe reads of an ExecutionContext."""

    def __init__(self, world: Any):
        self.world = world

    def iam(self, account_id: str) -> Any:
        return self.world.member_iam(account_id)


def test_workload_roles_get_the_boundary_and_the_probe_sees_it_changed(
    clean, retire_kit, tmp_path: Path
) -> None:
    world, prefix = clean, f"r{uuid.uuid4().hex[:5]}-"
    a1 = world.accounts[0]
    retire_kit.seed_user(world, a1, f"{prefix}fn", keys=1, inline=True)
    placement = Placement(a1, f"{prefix}fn", Runtime.LAMBDA, Confidence.HIGH)
    spec = _spec(tmp_path)
    plan_id = store_retire_plan(
        spec,
        f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        _inventories(world, prefix),
        approve_stages=("all",),
        approver="cab",
        workloads={placement.key: placement},
        settings={"permissions_boundary": BOUNDARY},
    )
    expected = f"arn:aws:iam::{a1}:policy/iamc/team-read"
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        content = store.plans.get_plan(plan_id).content
    [create] = [a for a in content["actions"] if a["kind"] == "create-workload-role"]
    assert create["params"]["permissions_boundary_arn"] == expected
    assert apply_plan(spec, plan_id, "replace", poll=retire_kit.QUICK)["failed"] == 0

    iam = world.member_iam(a1)
    name = replacement_role_name(f"{prefix}fn")
    assert iam.get_role(RoleName=name)["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == (
        expected
    )
    action = PlanAction(**{**create, "stage": Stage(create["stage"])})
    assert CreateWorkloadRole().probe(_Ctx(world), action).difference is None
    iam.put_role_permissions_boundary(
        RoleName=name, PermissionsBoundary="arn:aws:iam::aws:policy/AdministratorAccess"
    )
    drift = CreateWorkloadRole().probe(_Ctx(world), action).difference
    assert drift and "AdministratorAccess" in drift and expected in drift
    iam.delete_role_permissions_boundary(RoleName=name)
    assert "boundary none" in CreateWorkloadRole().probe(_Ctx(world), action).difference
