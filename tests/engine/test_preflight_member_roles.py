"""The preflight's member-role check (central-roles): a planned role of someone else refuses
the run before the central account grants anything; ours or identical ones pass (moto)."""

from __future__ import annotations

import json

import pytest

from engine.preflight import member_role_conflicts
from tasks.member_roles import CreateMemberRole
from tests.tasks.central_roles_fixtures import (
    MEMBER,
    context,
    member_role,
    user_arn,
)

ROOT_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111111111111:root"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture
def ctx(aws):
    return context()


def test_absent_roles_pass(ctx):
    assert member_role_conflicts(ctx, [member_role("Readers", [user_arn("jane")], [])]) == []


def test_someone_elses_role_of_the_planned_name_refuses_the_run(ctx):
    iam = ctx.iam(MEMBER)
    iam.create_role(
        RoleName="iamc-Readers", Path="/iamc/", AssumeRolePolicyDocument=json.dumps(ROOT_TRUST)
    )
    action = member_role("Readers", [user_arn("jane")], [])

    [problem] = member_role_conflicts(ctx, [action])
    assert problem.startswith(
        f"account {MEMBER}: role iamc-Readers (arn:aws:iam::{MEMBER}:role/iamc/iamc-Readers) "
        "already exists, was not made by this migration"
    )
    assert "its trust policy differs" in problem
    assert "Rename or delete that role, or make it identical to the plan" in problem


def test_a_role_identical_to_the_plan_is_adopted(ctx):
    action = member_role("Readers", [user_arn("jane")], [])
    params = action.params
    iam = ctx.iam(MEMBER)
    # Identical in what decides who gets what; its own tags otherwise (not this migration's).
    iam.create_role(
        RoleName="iamc-Readers",
        Path="/iamc/",
        AssumeRolePolicyDocument=json.dumps(params["trust_policy"]),
        Tags=[{"Key": "iamc:access", "Value": "Readers"}],
    )
    iam.put_role_policy(
        RoleName="iamc-Readers",
        PolicyName=params["inline_policy_name"],
        PolicyDocument=json.dumps(params["inline_policy"]),
    )

    assert member_role_conflicts(ctx, [action]) == []


def test_ours_passes_under_the_planned_path_but_not_elsewhere(ctx):
    earlier = member_role("Readers", [user_arn("jane")], [])
    CreateMemberRole().apply(
        ctx, earlier, CreateMemberRole().probe(ctx, earlier), lambda _: None, None
    )
    # This plan trusts one more person: the role differs, but an earlier plan of this
    # migration made it, so create-member-role brings it to the plan.
    now = member_role("Readers", [user_arn("jane"), user_arn("joe")], [])
    assert member_role_conflicts(ctx, [now]) == []

    moved = member_role("Readers", [user_arn("jane")], [])
    moved.params["path"] = "/elsewhere/"
    [problem] = member_role_conflicts(ctx, [moved])
    assert "its path is /iamc/ (plan: /elsewhere/)" in problem


def test_an_account_that_cant_be_read_refuses_the_run(ctx):
    action = member_role("Readers", [user_arn("jane")], [], account="999999999999")

    def unreachable(account_id):
        raise RuntimeError(f"AccessDenied assuming a role in {account_id}")

    ctx.member = unreachable
    [problem] = member_role_conflicts(ctx, [action])
    assert problem.startswith("account 999999999999: its planned member roles could not be read")
