"""The central account's side of central-roles: access groups, assume policies, memberships,
and the check that planned central principals exist (moto in-process, real executor)."""

from __future__ import annotations

import json

import pytest

from domain.central_roles import assume_policy
from domain.errors import BlockedError, ConflictError
from state.journal import ADOPTED, FAILED, SUCCEEDED
from tasks.central_access import HANDLERS, central_principal_problems
from tests.tasks.central_roles_fixtures import (
    CENTRAL,
    SETTINGS,
    access_group,
    access_policy,
    central_user,
    group_member,
    journal,
    the_role_arn,
)


@pytest.fixture
def run(aws):
    with journal(HANDLERS) as opened:
        yield opened


def _groups(run) -> list[str]:
    return [g["GroupName"] for g in run.ctx.iam(CENTRAL).list_groups()["Groups"]]


def _members(run, group: str) -> list[str]:
    return [u["UserName"] for u in run.ctx.iam(CENTRAL).get_group(GroupName=group)["Users"]]


def _group_policy(run, group: str, policy: str):
    return run.ctx.iam(CENTRAL).get_group_policy(GroupName=group, PolicyName=policy)[
        "PolicyDocument"
    ]


def test_group_policy_and_member_are_made_in_the_central_account_and_rolled_back(run):
    central_user(run.ctx, "jane")
    group, policy = access_group("Readers"), access_policy("Readers", [the_role_arn("Readers")])
    member = group_member("Readers", "jane")
    executor = run.executor()

    assert [executor.run(a) for a in (group, policy, member)] == [SUCCEEDED] * 3

    iam = run.ctx.iam(CENTRAL)
    assert iam.get_group(GroupName="iamc-Readers")["Group"]["Path"] == "/iamc/"
    assert _members(run, "iamc-Readers") == ["jane"]
    assert _group_policy(run, "iamc-Readers", "iamc-assume-Readers") == policy.params["document"]
    # The member account has none of it: everything happened in the central account.
    assert run.ctx.iam("222222222222").list_groups()["Groups"] == []

    assert run.rollback(member, policy, group) == [SUCCEEDED] * 3
    assert _groups(run) == []
    assert iam.list_groups_for_user(UserName="jane")["Groups"] == []


def test_a_group_and_membership_already_there_are_adopted_and_kept(run):
    central_user(run.ctx, "jane")
    iam = run.ctx.iam(CENTRAL)
    iam.create_group(GroupName="iamc-Readers", Path="/iamc/")
    iam.add_user_to_group(GroupName="iamc-Readers", UserName="jane")
    group, member = access_group("Readers"), group_member("Readers", "jane")
    executor = run.executor()

    assert [executor.run(group), executor.run(member)] == [ADOPTED, ADOPTED]
    assert run.rollback(member, group) == ["skipped", "skipped"]
    assert _members(run, "iamc-Readers") == ["jane"]


def test_a_group_of_the_name_elsewhere_is_a_conflict(run):
    run.ctx.iam(CENTRAL).create_group(GroupName="iamc-Readers", Path="/teams/")
    group = access_group("Readers")

    with pytest.raises(ConflictError, match="under path /teams/"):
        run.executor().run(group)
    assert run.entry(group).status == FAILED


def test_a_group_still_holding_others_members_is_kept_on_rollback(run):
    central_user(run.ctx, "jane")
    group = access_group("Readers")
    assert run.executor().run(group) == SUCCEEDED
    # Another wave's member (or one added by hand) since.
    run.ctx.iam(CENTRAL).add_user_to_group(GroupName="iamc-Readers", UserName="jane")

    assert run.rollback(group) == [SUCCEEDED]
    assert _groups(run) == ["iamc-Readers"]
    assert run.store.journal.journal_entry(run.plan_id, "rollback:" + group.id).outcome == {
        "kept": "iamc-Readers",
        "reason": "it still has members or policies",
    }


def test_a_policy_put_over_an_earlier_document_is_restored_by_the_rollback(run):
    run.ctx.iam(CENTRAL).create_group(GroupName="iamc-Readers", Path="/iamc/")
    earlier = assume_policy([the_role_arn("Readers", "333333333333")], SETTINGS)
    run.ctx.iam(CENTRAL).put_group_policy(
        GroupName="iamc-Readers",
        PolicyName="iamc-assume-Readers",
        PolicyDocument=json.dumps(earlier),
    )
    both = [the_role_arn("Readers", "333333333333"), the_role_arn("Readers")]
    policy = access_policy("Readers", both)
    executor = run.executor()
    assert executor.run(access_group("Readers")) == ADOPTED

    assert executor.run(policy) == SUCCEEDED
    assert _group_policy(run, "iamc-Readers", "iamc-assume-Readers") == policy.params["document"]
    assert run.entry(policy).undo["previous"] == earlier

    assert run.rollback(policy) == [SUCCEEDED]
    assert _group_policy(run, "iamc-Readers", "iamc-assume-Readers") == earlier


def test_a_put_keeps_the_roles_an_earlier_wave_allows_and_the_rollback_restores_its_document(
    run,
):
    iam = run.ctx.iam(CENTRAL)
    iam.create_group(GroupName="iamc-Readers", Path="/iamc/")
    earlier_arns = [
        the_role_arn("Readers", "333333333333"),
        the_role_arn("Readers", "444444444444"),
    ]
    earlier = assume_policy(earlier_arns, SETTINGS)
    iam.put_group_policy(
        GroupName="iamc-Readers",
        PolicyName="iamc-assume-Readers",
        PolicyDocument=json.dumps(earlier),
    )
    # Planned before the earlier wave was applied: its document names only its own role.
    policy = access_policy("Readers", [the_role_arn("Readers")])
    executor = run.executor()
    assert executor.run(access_group("Readers")) == ADOPTED

    assert executor.run(policy) == SUCCEEDED
    put = _group_policy(run, "iamc-Readers", "iamc-assume-Readers")
    assert put == assume_policy([*earlier_arns, the_role_arn("Readers")], SETTINGS)
    assert put["Statement"][0]["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    assert run.entry(policy).outcome == {
        "put": "iamc-assume-Readers",
        "on": "group iamc-Readers",
        "added": [the_role_arn("Readers")],
        "kept": sorted(earlier_arns),
    }
    assert run.entry(policy).undo["previous"] == earlier

    assert run.rollback(policy) == [SUCCEEDED]
    assert _group_policy(run, "iamc-Readers", "iamc-assume-Readers") == earlier


def test_a_document_covering_the_planned_roles_already_is_adopted_and_left(run):
    iam = run.ctx.iam(CENTRAL)
    iam.create_group(GroupName="iamc-Readers", Path="/iamc/")
    wider = assume_policy([the_role_arn("Readers"), the_role_arn("Readers", "333")], SETTINGS)
    iam.put_group_policy(
        GroupName="iamc-Readers", PolicyName="iamc-assume-Readers", PolicyDocument=json.dumps(wider)
    )
    policy = access_policy("Readers", [the_role_arn("Readers")])
    executor = run.executor()
    assert executor.run(access_group("Readers")) == ADOPTED

    assert executor.run(policy) == ADOPTED
    assert run.rollback(policy) == ["skipped"]
    assert _group_policy(run, "iamc-Readers", "iamc-assume-Readers") == wider


def test_only_role_arns_of_this_targets_own_statement_are_kept(run):
    iam = run.ctx.iam(CENTRAL)
    iam.create_role(RoleName="okta-admins", AssumeRolePolicyDocument=json.dumps({}))
    by_hand = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SwitchIntoTheAccess",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": [the_role_arn("Admins", "333333333333"), "arn:aws:iam::*:role/*"],
            },
            {
                "Sid": "Other",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": the_role_arn("Admins", "444444444444"),
            },
        ],
    }
    iam.put_role_policy(
        RoleName="okta-admins", PolicyName="iamc-assume-Admins", PolicyDocument=json.dumps(by_hand)
    )
    policy = access_policy("Admins", [the_role_arn("Admins")], "role", "okta-admins")

    assert run.executor().run(policy) == SUCCEEDED
    found = iam.get_role_policy(RoleName="okta-admins", PolicyName="iamc-assume-Admins")
    assert found["PolicyDocument"] == assume_policy(
        [the_role_arn("Admins"), the_role_arn("Admins", "333333333333")], SETTINGS
    )


def test_a_group_that_already_grants_something_else_is_not_adopted(run):
    central_user(run.ctx, "jane")
    iam = run.ctx.iam(CENTRAL)
    admin = iam.create_policy(
        PolicyName="AdministratorAccess",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.create_group(GroupName="iamc-Admins", Path="/iamc/")
    iam.attach_group_policy(GroupName="iamc-Admins", PolicyArn=admin)
    group, member = access_group("Admins"), group_member("Admins", "jane")
    executor = run.executor()

    with pytest.raises(ConflictError, match=f"already grants managed policy {admin}"):
        executor.run(group)
    assert run.entry(group).status == FAILED
    # Nobody is put into it: the membership waits for the group, which failed.
    with pytest.raises(BlockedError):
        executor.run(member)
    assert iam.get_group(GroupName="iamc-Admins")["Users"] == []


def test_a_group_with_another_inline_policy_is_not_adopted_but_its_own_assume_policy_is(run):
    iam = run.ctx.iam(CENTRAL)
    iam.create_group(GroupName="iamc-Readers", Path="/iamc/")
    iam.put_group_policy(
        GroupName="iamc-Readers",
        PolicyName="iamc-assume-Readers",
        PolicyDocument=json.dumps(assume_policy([the_role_arn("Readers", "333")], SETTINGS)),
    )
    assert run.executor().run(access_group("Readers")) == ADOPTED

    iam.create_group(GroupName="iamc-Writers", Path="/iamc/")
    iam.put_group_policy(
        GroupName="iamc-Writers",
        PolicyName="s3-everything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    writers = access_group("Writers")
    with pytest.raises(ConflictError, match="already grants inline policy s3-everything"):
        run.executor().run(writers)
    assert run.entry(writers).status == FAILED


def test_an_identical_policy_is_adopted_and_one_put_again_since_is_kept(run):
    iam = run.ctx.iam(CENTRAL)
    iam.create_group(GroupName="iamc-Readers", Path="/iamc/")
    policy = access_policy("Readers", [the_role_arn("Readers")])
    iam.put_group_policy(
        GroupName="iamc-Readers",
        PolicyName="iamc-assume-Readers",
        PolicyDocument=json.dumps(policy.params["document"]),
    )
    executor = run.executor()
    assert executor.run(access_group("Readers")) == ADOPTED
    assert executor.run(policy) == ADOPTED
    assert run.rollback(policy) == ["skipped"]

    # Ours, then a later wave's document over it: a rollback of ours leaves the later one.
    writers = access_policy("Writers", [the_role_arn("Writers")], "group", "iamc-Readers")
    assert run.executor().run(writers) == SUCCEEDED
    later = assume_policy(
        [the_role_arn("Writers"), the_role_arn("Writers", "444444444444")], SETTINGS
    )
    iam.put_group_policy(
        GroupName="iamc-Readers",
        PolicyName="iamc-assume-Writers",
        PolicyDocument=json.dumps(later),
    )
    assert run.rollback(writers) == [SUCCEEDED]
    assert _group_policy(run, "iamc-Readers", "iamc-assume-Writers") == later


def test_a_federated_roles_policy_is_put_on_the_role_and_deleted_by_the_rollback(run):
    iam = run.ctx.iam(CENTRAL)
    iam.create_role(RoleName="okta-admins", AssumeRolePolicyDocument=json.dumps({}))
    policy = access_policy("Admins", [the_role_arn("Admins")], "role", "okta-admins")

    assert run.executor().run(policy) == SUCCEEDED
    found = iam.get_role_policy(RoleName="okta-admins", PolicyName="iamc-assume-Admins")
    assert found["PolicyDocument"] == policy.params["document"]

    assert run.rollback(policy) == [SUCCEEDED]
    assert iam.list_role_policies(RoleName="okta-admins")["PolicyNames"] == []


def test_a_member_whose_user_is_gone_fails_with_awss_reason(run):
    run.ctx.iam(CENTRAL).create_group(GroupName="iamc-Readers", Path="/iamc/")
    executor = run.executor()
    group, member = access_group("Readers"), group_member("Readers", "ghost")
    executor.run(group)

    with pytest.raises(Exception, match="AddUserToGroup ghost to iamc-Readers: NoSuchEntity"):
        executor.run(member)
    assert run.entry(member).status == FAILED


def test_planned_central_principals_are_checked_in_the_central_account(run):
    jane = central_user(run.ctx, "jane")
    okta = run.ctx.iam(CENTRAL).create_role(
        RoleName="okta-admins", AssumeRolePolicyDocument=json.dumps({})
    )["Role"]["Arn"]
    moved = f"arn:aws:iam::{CENTRAL}:user/elsewhere/jane"
    ghost = f"arn:aws:iam::{CENTRAL}:user/people/ghost"

    assert central_principal_problems(run.ctx.member, [jane, okta], [(CENTRAL, "jane")]) == []
    assert central_principal_problems(run.ctx.member, [moved, ghost], [(CENTRAL, "joe")]) == [
        f"central user ghost ({ghost}) no longer exists in the central account {CENTRAL}",
        f"central user jane is now {jane} (planned {moved})",
        f"central user joe ({CENTRAL}) no longer exists in the central account {CENTRAL}",
    ]
