"""The disable stage's central-roles precondition: the person can still sign in to switch.

A person arriving as the central account's IAM user needs an MFA device (the member roles'
trust requires MFA); one arriving through SAML needs their federated role. Without it their
old user is not disabled (moto in-process; the member role is in place as planned).
"""

from __future__ import annotations

import json

import pytest

from domain.central_spec import SAML_ROLES
from domain.plan import Outcome, Plan, PlanAction, Stage, UserPlan
from engine.stage_run import StageRun, UserWork
from stages.disable import new_access_in_place
from tests.tasks.central_roles_fixtures import (
    CENTRAL,
    MEMBER,
    SETTINGS,
    central_user,
    context,
    member_role,
)


def _run(central, identity: str, principal: str) -> tuple[StageRun, UserWork]:
    """A plan giving ``identity`` one member role (created as planned), and the quarantine
    of their old user waiting for it."""
    ctx = context()
    role = member_role("Readers", [principal], [])
    ctx.iam(MEMBER).create_role(
        RoleName=role.params["role_name"],
        Path=role.params["path"],
        AssumeRolePolicyDocument=json.dumps(role.params["trust_policy"]),
    )
    quarantine = PlanAction(
        id=f"disable:{MEMBER}:{identity}-old:attach-quarantine-policy",
        stage=Stage.DISABLE,
        kind="attach-quarantine-policy",
        account_id=MEMBER,
        target=f"{identity}-old",
        target_fingerprint="fp",
        params={"user": f"{identity}-old"},
        depends_on=[role.id],
    )
    plan = Plan(
        migration="acme",
        inventory_snapshot_id=1,
        mapping_run_id=None,
        settings={"target": "central-roles", "central": central.model_dump()},
        users=[
            UserPlan(
                MEMBER,
                f"{identity}-old",
                "human",
                Outcome.MIGRATE,
                "mapped",
                "fp",
                identity=identity,
                permission_sets=["Readers"],
            )
        ],
        actions=[role, quarantine],
        permission_sets=[],
        assignments=[],
        required_customer_policies=[],
        findings=[],
    )
    rt = StageRun(None, None, plan, 1, lambda: ctx)  # type: ignore[arg-type]
    return rt, UserWork(MEMBER, f"{identity}-old", [quarantine])


def _enable_mfa(rt: StageRun, user: str) -> None:
    iam = rt.ctx.iam(CENTRAL)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"][
        "SerialNumber"
    ]
    iam.enable_mfa_device(
        UserName=user,
        SerialNumber=serial,
        AuthenticationCode1="123456",
        AuthenticationCode2="654321",
    )


def test_a_person_without_an_mfa_device_is_not_disabled(aws) -> None:
    jane = central_user(context(), "jane")
    rt, work = _run(SETTINGS, "jane", jane)
    assert new_access_in_place(rt, work, None) == [  # type: ignore[arg-type]
        "central user jane has no MFA device: the member roles require MFA, so they could not "
        "switch in; enable one, then resume this run"
    ]
    # Read once per run: a device enabled since is seen by the next run, not this one.
    _enable_mfa(rt, "jane")
    assert new_access_in_place(rt, work, None) != []  # type: ignore[arg-type]
    next_run = StageRun(None, None, rt.plan, 1, context)  # type: ignore[arg-type]
    assert new_access_in_place(next_run, work, None) == []  # type: ignore[arg-type]


def test_a_person_whose_central_user_is_gone_is_not_disabled(aws) -> None:
    rt, work = _run(SETTINGS, "joe", f"arn:aws:iam::{CENTRAL}:user/people/joe")
    [problem] = new_access_in_place(rt, work, None)  # type: ignore[arg-type]
    assert problem.startswith(f"central user joe does not exist in {CENTRAL}")


@pytest.mark.parametrize("exists", [True, False])
def test_a_saml_person_needs_their_federated_role(aws, exists: bool) -> None:
    central = SETTINGS.model_copy(update={"arrive": SAML_ROLES})
    ctx = context()
    arn = f"arn:aws:iam::{CENTRAL}:role/federated/eng"
    if exists:
        ctx.iam(CENTRAL).create_role(
            RoleName="eng", Path="/federated/", AssumeRolePolicyDocument=json.dumps({})
        )
    rt, work = _run(central, "eng", arn)
    problems = new_access_in_place(rt, work, None)  # type: ignore[arg-type]
    if exists:
        assert problems == []
    else:
        [problem] = problems
        assert problem.startswith(f"federated role eng does not exist in {CENTRAL}")
