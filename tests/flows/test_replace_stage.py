"""The replace stage in the in-process sandbox: planned, applied, crashed and resumed, rolled back.

Workload users with placed runtimes get a role under ``/iamc/`` with the runtime's trust and the
user's permissions; unknown or low-confidence ones get nothing; a resumed crash creates no role
twice; a rollback removes exactly what the run created (an adopted OIDC provider and roles that
were there before stay); a loose trust policy is a blocking finding and the stage can't run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.plans import store_retire_plan
from domain.errors import ApplyRefused
from domain.plan import Outcome
from domain.records import Account
from domain.workloads import ROLE_PATH, Confidence, Placement, Runtime, replacement_role_name
from engine.apply import apply_plan
from engine.executor import AFTER_CALL, AFTER_INTENT, InjectedCrash
from engine.rollback import rollback_plan
from state import Store
from tasks.iam_users import ClassificationRules, inventory_account

HOST = "token.actions.githubusercontent.com"
GROUP_DOC = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}],
}


def _spec(tmp_path: Path) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "wave-1"\nstate = "sqlite:///state.db"\n'
        "[aws]\nrate_limits = { sso-admin = 1000, identitystore = 1000, iam = 1000 }\n"
    )
    return spec


def _provider_arns(world: Any, account_id: str) -> list[str]:
    iam = world.member_iam(account_id)
    return [
        p["Arn"]
        for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        if p["Arn"].endswith(HOST)
    ]


def _set_providers(world: Any) -> None:
    """Account 1 without GitHub's OIDC provider (the stage creates it), account 2 with one
    made by someone else (the stage adopts it)."""
    a1, a2 = world.accounts
    for arn in _provider_arns(world, a1):
        world.member_iam(a1).delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    if not _provider_arns(world, a2):
        world.member_iam(a2).create_open_id_connect_provider(
            Url=f"https://{HOST}", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
        )


def _seed(world: Any, kit: Any, prefix: str) -> dict[tuple[str, str], Placement]:
    """Workload users in both accounts and where their keys are used from."""
    a1, a2 = world.accounts
    group = f"{prefix}senders"
    kit.seed_user(world, a1, f"{prefix}fn", keys=1, inline=True, managed=True, group=group)
    world.member_iam(a1).put_group_policy(
        GroupName=group, PolicyName="send", PolicyDocument=json.dumps(GROUP_DOC)
    )
    for name in ("task", "box", "ci", "vendor", "mystery", "guess"):
        kit.seed_user(world, a1, f"{prefix}{name}", keys=1)
    kit.seed_user(world, a2, f"{prefix}deploy", keys=1, inline=True)
    high = Confidence.HIGH

    def placed(account: str, name: str, runtime: Runtime, confidence=high, **kw) -> Placement:
        return Placement(account, f"{prefix}{name}", runtime, confidence, **kw)

    found = [
        placed(a1, "fn", Runtime.LAMBDA),
        placed(a1, "task", Runtime.ECS, Confidence.MEDIUM),
        placed(a1, "box", Runtime.EC2),
        placed(a1, "ci", Runtime.GITHUB_ACTIONS, repository="acme/app"),
        placed(a1, "vendor", Runtime.VENDOR, vendor_account="999999999999", external_id="ext-7"),
        placed(a1, "mystery", Runtime.UNKNOWN, Confidence.NONE),
        placed(a1, "guess", Runtime.LAMBDA, Confidence.LOW, evidence=["a plain SDK agent"]),
        placed(a2, "deploy", Runtime.GITHUB_ACTIONS, repository="acme/infra"),
    ]
    return {p.key: p for p in found}


def _plan(
    world: Any, tmp_path: Path, prefix: str, placements: dict, approve: tuple[str, ...] = ("all",)
) -> tuple[Path, int]:
    spec = _spec(tmp_path)
    inventories = []
    for account_id in world.accounts:
        found = inventory_account(
            world.member_session(account_id), Account(account_id), ClassificationRules()
        )
        found.users = [u for u in found.users if u.name.startswith(prefix)]
        inventories.append(found)
    plan_id = store_retire_plan(
        spec,
        f"sqlite:///{tmp_path / 'state.db'}",
        "wave-1",
        inventories,
        approve_stages=approve,
        approver="cab",
        workloads=placements,
    )
    return spec, plan_id


def _content(tmp_path: Path, plan_id: int) -> dict[str, Any]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return store.plans.get_plan(plan_id).content


def _roles(world: Any, account_id: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Roles under /iamc/ of the account whose names start with iamc-wl-<prefix>."""
    iam = world.member_iam(account_id)
    found = {}
    for page in iam.get_paginator("list_roles").paginate(PathPrefix=ROLE_PATH):
        for role in page["Roles"]:
            name = role["RoleName"]
            if not name.startswith(replacement_role_name(prefix)):
                continue
            found[name] = {
                "trust": role["AssumeRolePolicyDocument"],
                "inline": sorted(iam.list_role_policies(RoleName=name)["PolicyNames"]),
                "attached": sorted(
                    p["PolicyArn"]
                    for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
                ),
                "profiles": sorted(
                    p["InstanceProfileName"]
                    for p in iam.list_instance_profiles_for_role(RoleName=name)["InstanceProfiles"]
                ),
            }
    return found


def _apply_run_id(tmp_path: Path) -> int:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        return [r.id for r in store.runs.list_runs() if r.kind == "apply"][-1]


@pytest.fixture
def replace_world(clean, retire_kit, tmp_path: Path):
    prefix = f"w{uuid.uuid4().hex[:5]}-"
    _set_providers(clean)
    placements = _seed(clean, retire_kit, prefix)
    return clean, prefix, placements


def test_placed_workloads_get_roles_with_their_trust_and_permissions_and_roll_back_exactly(
    replace_world, tmp_path: Path
):
    world, prefix, placements = replace_world
    a1, a2 = world.accounts
    # A role of someone else's under /iamc/ that the stage must never touch.
    iam1 = world.member_iam(a1)
    keep = replacement_role_name(f"{prefix}zz-kept")
    lambda_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam1.create_role(
        RoleName=keep, Path=ROLE_PATH, AssumeRolePolicyDocument=json.dumps(lambda_trust)
    )
    spec, plan_id = _plan(world, tmp_path, prefix, placements)
    content = _content(tmp_path, plan_id)

    outcomes = {u["user"].removeprefix(prefix): u for u in content["users"]}
    replaced = {"fn", "task", "box", "ci", "vendor", "deploy"}
    assert {n for n, u in outcomes.items() if u["outcome"] == Outcome.REPLACE_WITH_ROLE} == replaced
    assert outcomes["mystery"]["outcome"] == Outcome.SKIP_WORKLOAD
    assert "runtime unknown" in outcomes["mystery"]["reason"]
    assert "[[workloads]]" in outcomes["guess"]["reason"] and "low" in outcomes["guess"]["reason"]
    actions = [a for a in content["actions"] if a["stage"] == "replace"]
    assert {
        a["target"].removeprefix(prefix) for a in actions if a["kind"] != "ensure-oidc-provider"
    } == replaced
    providers = [a for a in actions if a["kind"] == "ensure-oidc-provider"]
    assert sorted(a["account_id"] for a in providers) == sorted([a1, a2])
    ci_role = next(
        a for a in actions if a["kind"] == "create-workload-role" and a["target"] == f"{prefix}ci"
    )
    assert ci_role["depends_on"] == [f"replace:{a1}:oidc-provider"]
    assert not any(f["severity"] == "blocking" for f in content["findings"])

    summary = apply_plan(spec, plan_id, "replace")
    assert summary["failed"] == 0 and summary["pending"] == 0
    assert summary["succeeded"] + summary["adopted"] == len(actions)

    roles = _roles(world, a1, prefix)
    name = {n: replacement_role_name(f"{prefix}{n}") for n in replaced}
    assert set(roles) == {name[n] for n in replaced - {"deploy"}} | {keep}
    fn = roles[name["fn"]]
    assert fn["trust"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert fn["inline"] == sorted(["own", f"group-{prefix}senders-send"])
    assert fn["attached"] == [f"arn:aws:iam::{a1}:policy/iamc/team-read"]
    task = roles[name["task"]]["trust"]["Statement"][0]
    assert task["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert task["Condition"] == {"StringEquals": {"aws:SourceAccount": a1}}
    assert roles[name["box"]]["profiles"] == [name["box"]]
    ci = roles[name["ci"]]["trust"]["Statement"][0]
    assert ci["Principal"] == {"Federated": f"arn:aws:iam::{a1}:oidc-provider/{HOST}"}
    assert ci["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert ci["Condition"]["StringEquals"] == {
        f"{HOST}:aud": "sts.amazonaws.com",
        f"{HOST}:sub": "repo:acme/app:ref:refs/heads/main",
    }
    vendor = roles[name["vendor"]]["trust"]["Statement"][0]
    assert vendor["Principal"] == {"AWS": "arn:aws:iam::999999999999:root"}
    assert vendor["Condition"] == {"StringEquals": {"sts:ExternalId": "ext-7"}}
    assert set(_roles(world, a2, prefix)) == {name["deploy"]}
    assert len(_provider_arns(world, a1)) == 1 and len(_provider_arns(world, a2)) == 1
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        adopted = store.journal.journal_entry(plan_id, f"replace:{a2}:oidc-provider")
    assert adopted is not None and adopted.status == "adopted"

    rolled = rollback_plan(spec, _apply_run_id(tmp_path))
    assert rolled["stage"] == "replace"
    assert set(_roles(world, a1, prefix)) == {keep}  # someone else's role stays
    assert _roles(world, a2, prefix) == {}
    assert _provider_arns(world, a1) == []  # created by the run: removed
    assert len(_provider_arns(world, a2)) == 1  # adopted: kept
    profiles = world.member_iam(a1).list_instance_profiles(PathPrefix=ROLE_PATH)
    assert not [p for p in profiles["InstanceProfiles"] if prefix in p["InstanceProfileName"]]


@pytest.mark.parametrize(
    ("user", "kind", "point"),
    [
        ("ci", "create-workload-role", AFTER_CALL),
        ("fn", "create-workload-role", AFTER_INTENT),
        ("box", "create-instance-profile", AFTER_CALL),
        ("fn", "put-role-policy:own", AFTER_CALL),
    ],
)
def test_a_crashed_replace_run_resumes_without_a_duplicate_role(
    replace_world, tmp_path: Path, user: str, kind: str, point: str
):
    world, prefix, placements = replace_world
    a1 = world.accounts[0]
    spec, plan_id = _plan(world, tmp_path, prefix, placements)
    actions = [a for a in _content(tmp_path, plan_id)["actions"] if a["stage"] == "replace"]
    victim = f"replace:{a1}:{prefix}{user}:{kind}"
    assert victim in {a["id"] for a in actions}
    world.control.reset_calls()

    with pytest.raises(InjectedCrash):
        apply_plan(spec, plan_id, "replace", fault=(victim, point))
    run_id = _apply_run_id(tmp_path)
    summary = apply_plan(spec, plan_id, "replace", resume_run_id=run_id)

    assert summary["failed"] == 0 and summary["pending"] == 0, summary
    assert summary["succeeded"] + summary["adopted"] == len(actions)
    roles = {**_roles(world, a1, prefix), **_roles(world, world.accounts[1], prefix)}
    assert len(roles) == 6  # one per replaced user, none twice
    calls = world.control.calls()["calls"]
    assert calls.get("iam:CreateRole", 0) == 6
    assert calls.get("iam:CreateInstanceProfile", 0) == 1
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        resumed = store.journal.journal_entry(plan_id, victim)
    assert resumed is not None and resumed.status == "succeeded"
    assert resumed.intent["existed_before"] is False  # ours: a rollback removes it
    rollback_plan(spec, run_id)
    assert _roles(world, a1, prefix) == {}


def test_a_loose_trust_is_a_blocking_finding_and_the_stage_is_refused(
    replace_world, tmp_path: Path
):
    world, prefix, placements = replace_world
    a1 = world.accounts[0]
    loose = {key: placement for key, placement in placements.items() if key[1] == f"{prefix}ci"}
    loose[(a1, f"{prefix}ci")].repository = "acme/*"
    spec, plan_id = _plan(world, tmp_path, prefix, loose, approve=())
    content = _content(tmp_path, plan_id)
    blocking = [f for f in content["findings"] if f["severity"] == "blocking"]
    assert [f["kind"] for f in blocking] == ["replace-loose-trust"]
    assert "spans repositories" in blocking[0]["message"]
    assert blocking[0]["details"]["stages"] == ["replace"]

    with pytest.raises(ApplyRefused, match="blocking"):
        apply_plan(spec, plan_id, "replace")
    assert _roles(world, a1, prefix) == {}
    assert _provider_arns(world, a1) == []


def test_each_role_is_assumed_by_its_runtime_and_refused_to_any_other(
    replace_world, tmp_path: Path
):
    """The trust the stage wrote, evaluated as STS does (the sandbox's trust layer): the
    runtime it was written for gets in and the role's last use moves; another service, another
    repository, another audience, another account or a wrong ExternalId is refused."""
    from domain.errors import SandboxError

    world, prefix, placements = replace_world
    a1, _ = world.accounts
    spec, plan_id = _plan(world, tmp_path, prefix, placements)
    assert apply_plan(spec, plan_id, "replace")["pending"] == 0
    vendor = {"vendor_account": "999999999999", "external_id": "ext-7"}
    wrong = [
        ("fn", "ecs", {}),  # a Lambda execution role: not for ECS tasks
        ("box", "lambda", {}),  # an instance profile's role: not for Lambda
        ("task", "ecs", {"source_account": "111122223333"}),  # another account's task
        ("ci", "github-actions", {"repository": "acme/other"}),  # another repository's token
        ("ci", "github-actions", {"repository": "acme/app", "audience": "sigstore"}),
        ("vendor", "vendor", {**vendor, "external_id": "ext-8"}),  # the confused deputy
        ("vendor", "vendor", {"vendor_account": "888888888888", "external_id": "ext-7"}),
    ]
    for name, runtime, overrides in wrong:
        with pytest.raises(SandboxError):
            world.control.switch_workload(a1, f"{prefix}{name}", runtime, **overrides)
    iam = world.member_iam(a1)
    for name, runtime, overrides in [
        ("fn", "lambda", {}),
        ("task", "ecs", {}),
        ("box", "ec2", {}),
        ("ci", "github-actions", {"repository": "acme/app"}),
        ("vendor", "vendor", vendor),
    ]:
        role = replacement_role_name(f"{prefix}{name}")
        assert "LastUsedDate" not in iam.get_role(RoleName=role)["Role"].get("RoleLastUsed", {})
        switched = world.control.switch_workload(a1, f"{prefix}{name}", runtime, **overrides)
        assert switched["switched"] and switched["role_arn"].endswith(f"{ROLE_PATH}{role}")
        assert iam.get_role(RoleName=role)["Role"]["RoleLastUsed"]["LastUsedDate"]
