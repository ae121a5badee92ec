"""A plan trimmed to what was used provisions, and verify proves nobody lost what they used."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.records import Account, MatchStatus, UserMapping
from domain.synthesis import synthesize
from domain.usage import UsageRead, UserUsage
from engine.apply import apply_plan
from state import Store

# Recent: a trim-mode plan refuses a read older than a week (usage-read-old).
WHEN = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
QUEUES = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}],
}


def _trimmed_plan(
    world: Any, kit: Any, tmp_path: Path, usage_of: dict, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, int, str]:
    """jane (s3:GetObject used; sqs:SendMessage never) migrated to alice, in trim mode."""
    import bench.plans
    from bench.plans import store_retire_plan
    from tasks.iam_users import ClassificationRules, inventory_account

    a1 = world.accounts[0]
    jane = f"t{uuid.uuid4().hex[:6]}-jane"
    kit.seed_user(world, a1, jane, keys=1, password=True, inline=True)
    world.member_iam(a1).put_user_policy(
        UserName=jane, PolicyName="queues", PolicyDocument=json.dumps(QUEUES)
    )
    inventories = []
    for account_id in world.accounts:
        found = inventory_account(
            world.member_session(account_id), Account(account_id), ClassificationRules()
        )
        found.users = [u for u in found.users if u.name == jane]
        inventories.append(found)
    alice = world.users["alice@example.com"]
    mappings = [UserMapping(a1, jane, MatchStatus.MATCHED, "override", alice, "alice@example.com")]
    usage = UsageRead(None, 1, 90, WHEN, {(a1, jane): UserUsage(a1, jane, **usage_of)})
    # Stored as 'iamc usage' stores it: the latest read, the one the plan relies on (apply
    # refuses a plan whose read is gone or superseded; verify replays the plan's read).
    state = f"sqlite:///{tmp_path / 'state.db'}"
    with Store.open(state) as store:
        migration_id = store.migrations.ensure_migration("wave-1", {})
        run = store.runs.start_run(migration_id, "inventory")
        usage.snapshot_id = store.snapshots.new_snapshot(migration_id, run)  # the read's users
        for inventory in inventories:
            store.snapshots.save_account_inventory(usage.snapshot_id, inventory)
        store.snapshots.complete_snapshot(usage.snapshot_id)
        store.runs.finish_run(run, "succeeded")
        run = store.runs.start_run(migration_id, "usage")
        store.usage.save_read(migration_id, run, usage)
        store.runs.finish_run(run, "succeeded")
    # The plan names its read, as flows.plan does (store_retire_plan doesn't pass it on).
    monkeypatch.setattr(
        bench.plans, "build_plan", functools.partial(bench.plans.build_plan, usage_read_id=usage.id)
    )
    synthesis = synthesize(inventories, mappings, [], [], usage=usage, least_privilege_mode="trim")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n[least_privilege]\nmode = "trim"\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
    )
    plan_id = store_retire_plan(
        spec,
        f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        inventories,
        approve_stages=("provision",),
        approver="cab",
        user_mappings=mappings,
        synthesis=synthesis,
    )
    return spec, plan_id, a1


def test_trimmed_plan_provisions_and_verify_fails_when_a_used_action_is_removed(
    clean, retire_kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from flows.verify import verify_flow

    used = {"services": {"s3": WHEN}, "actions": {"s3:GetObject": WHEN}}
    spec, plan_id, a1 = _trimmed_plan(clean, retire_kit, tmp_path, used, monkeypatch)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        info = store.plans.get_plan(plan_id)
    section = info.content["least_privilege"]
    [loss] = section["losses"]
    assert loss["services_removed"] == ["sqs"]
    [definition] = info.content["permission_sets"]
    assert json.dumps(definition["inline_policy"]).count("sqs") == 0

    apply_plan(spec, plan_id, "provision", poll=retire_kit.QUICK)
    assert verify_flow(str(spec), plan_id, return_state=True).is_completed()

    # By hand: the provisioned role no longer allows what jane used.
    iam = clean.member_iam(a1)
    [role] = [
        r["RoleName"]
        for r in iam.list_roles(PathPrefix="/aws-reserved/sso.amazonaws.com/")["Roles"]
        if r["RoleName"].startswith(f"AWSReservedSSO_{definition['name']}_")
    ]
    # A guardrail attached by hand: the role's policies are still the set's, but it denies
    # an action jane used in the window.
    deny = iam.create_policy(
        PolicyName=f"deny-{uuid.uuid4().hex[:6]}",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=role, PolicyArn=deny)
    state = verify_flow(str(spec), plan_id, return_state=True)
    assert state.is_failed()
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        migration_id = store.migrations.find_migration("wave-1")
        [_, run] = [r for r in store.runs.list_runs(migration_id) if r.kind == "verify"]
    assert "s3:GetObject" in run.error and definition["name"] in run.error, run.error
    assert "alice@example.com" in run.error and "jane" in run.error


def test_held_access_excuses_a_trimmed_policy_by_its_arn_not_its_name():
    from domain.records import AccountInventory, AttachedPolicy, User
    from tasks.verify_access import AccessCheck, _check_held_access

    a1 = "111111111111"
    trimmed = f"arn:aws:iam::{a1}:policy/Deploy"
    other = f"arn:aws:iam::{a1}:policy/team/Deploy"  # same name, another path
    jane = User(
        name="jane",
        user_id="AIDAJANE",
        arn=f"arn:aws:iam::{a1}:user/jane",
        attached_policies=[AttachedPolicy(trimmed, "Deploy"), AttachedPolicy(other, "Deploy")],
    )
    inventory = AccountInventory(Account(a1), [jane])
    loss = {
        "policies_dropped": ["Deploy"],
        "policy_arns_removed": [trimmed],
        "statements_narrowed": 0,
    }
    check = AccessCheck("alice@example.com", a1, ["jane"], ["ps"])
    _check_held_access(check, inventory, (set(), set()), {"jane": [loss]})
    [problem] = check.problems
    assert other in problem and trimmed not in problem
