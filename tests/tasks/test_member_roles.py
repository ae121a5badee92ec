"""The central-roles member role: created, adopted, brought to the plan, refused, resumed after a
crash part-way, and rolled back, through the executor and journal (moto in-process)."""

from __future__ import annotations

import json

import pytest

from domain.errors import ConflictError
from engine.executor import InjectedCrash
from state.journal import ADOPTED, FAILED, ROLLED_BACK, STARTED, SUCCEEDED
from tasks.member_roles import HANDLERS, read_role_state, verify_member_roles
from tests.tasks.central_roles_fixtures import (
    CENTRAL,
    INLINE_DOC,
    MEMBER,
    MIGRATION,
    central_user,
    customer_policy,
    journal,
    member_role,
)


@pytest.fixture
def run(aws):
    with journal(HANDLERS) as opened:
        yield opened


def _role_names(run) -> list[str]:
    return [r["RoleName"] for r in run.ctx.iam(MEMBER).list_roles(PathPrefix="/iamc/")["Roles"]]


def _as_planned(state, action) -> None:
    params = action.params
    assert state["path"] == "/iamc/"
    assert state["description"] == params["description"]
    assert state["max_session_duration"] == 3600
    assert state["trust_policy"] == params["trust_policy"]
    assert state["managed_policy_arns"] == params["managed_policy_arns"]
    assert state["inline_policies"] == {"iamc-access": INLINE_DOC}
    assert state["permissions_boundary_arn"] == params["permissions_boundary_arn"]
    assert state["tags"] == {t["Key"]: t["Value"] for t in params["tags"]}


def test_a_missing_role_is_created_whole_and_a_rollback_deletes_it(run):
    jane = central_user(run.ctx, "jane")
    read = customer_policy(run.ctx, MEMBER, "team-read")
    boundary = customer_policy(run.ctx, MEMBER, "boundary")
    action = member_role("Readers", [jane], [read], boundary=boundary)

    assert run.executor().run(action) == SUCCEEDED

    state = read_role_state(run.ctx.iam(MEMBER), "iamc-Readers")
    _as_planned(state, action)
    assert state["trust_policy"]["Statement"][0]["Condition"] == {
        "Bool": {"aws:MultiFactorAuthPresent": "true"}
    }
    assert verify_member_roles(run.ctx, [action]) == []
    assert run.rollback(action) == [SUCCEEDED]
    assert _role_names(run) == []
    assert run.entry(action).status == ROLLED_BACK
    # The managed policies it had attached are the account's: still there.
    assert run.ctx.iam(MEMBER).get_policy(PolicyArn=read)["Policy"]["AttachmentCount"] == 0


def test_an_identical_role_is_adopted_and_a_rollback_leaves_it(run):
    jane = central_user(run.ctx, "jane")
    read = customer_policy(run.ctx, MEMBER, "team-read")
    action = member_role("Readers", [jane], [read])
    # Someone (another migration's tags, or none) made exactly the planned role.
    iam = run.ctx.iam(MEMBER)
    iam.create_role(
        RoleName="iamc-Readers",
        Path="/iamc/",
        AssumeRolePolicyDocument=json.dumps(action.params["trust_policy"]),
        Tags=[{"Key": "iamc:access", "Value": "Readers"}],
    )
    iam.attach_role_policy(RoleName="iamc-Readers", PolicyArn=read)
    iam.put_role_policy(
        RoleName="iamc-Readers", PolicyName="iamc-access", PolicyDocument=json.dumps(INLINE_DOC)
    )

    assert run.executor().run(action) == ADOPTED
    assert run.entry(action).intent["existed_before"] is True
    assert run.rollback(action) == ["skipped"]
    assert _role_names(run) == ["iamc-Readers"]
    assert read_role_state(iam, "iamc-Readers")["managed_policy_arns"] == [read]


def test_a_role_of_this_migration_that_differs_is_brought_to_the_plan_and_put_back(run):
    jane, joe = central_user(run.ctx, "jane"), central_user(run.ctx, "joe")
    read = customer_policy(run.ctx, MEMBER, "team-read")
    old = customer_policy(run.ctx, MEMBER, "old-read")
    earlier = member_role("Readers", [jane], [old], inline=None)
    # An earlier plan of this migration made it with other people and policies.
    with journal(HANDLERS) as before:
        assert before.executor().run(earlier) == SUCCEEDED
    previous = read_role_state(run.ctx.iam(MEMBER), "iamc-Readers")
    action = member_role("Readers", [jane, joe], [read])

    assert run.executor().run(action) == SUCCEEDED

    entry = run.entry(action)
    assert entry.intent["existed_before"] is False
    assert entry.undo["previous"]["managed_policy_arns"] == [old]
    _as_planned(read_role_state(run.ctx.iam(MEMBER), "iamc-Readers"), action)
    # Undone: the earlier plan's role again, not deleted.
    assert run.rollback(action) == [SUCCEEDED]
    now = read_role_state(run.ctx.iam(MEMBER), "iamc-Readers")
    assert {k: now[k] for k in previous} == previous


def test_a_differing_role_of_someone_else_fails_the_run_and_is_not_touched(run):
    jane = central_user(run.ctx, "jane")
    read = customer_policy(run.ctx, MEMBER, "team-read")
    action = member_role("Readers", [jane], [read])
    iam = run.ctx.iam(MEMBER)
    other = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam.create_role(
        RoleName="iamc-Readers",
        Path="/iamc/",
        AssumeRolePolicyDocument=json.dumps(other),
        Tags=[{"Key": "iamc:migration", "Value": "someone-else"}],
    )

    with pytest.raises(ConflictError, match=r"not created by this migration.*trust policy differs"):
        run.executor().run(action)

    entry = run.entry(action)
    assert entry.status == FAILED
    assert "not created by this migration" in entry.error
    state = read_role_state(iam, "iamc-Readers")
    assert state["trust_policy"] == other
    assert state["managed_policy_arns"] == []
    # Nothing of it is ours: a rollback leaves it.
    assert run.rollback(action) == ["skipped"]
    assert _role_names(run) == ["iamc-Readers"]


def test_a_crash_between_create_role_and_attach_is_finished_on_resume_without_a_duplicate(run):
    jane = central_user(run.ctx, "jane")
    read = customer_policy(run.ctx, MEMBER, "team-read")
    write = customer_policy(run.ctx, MEMBER, "team-write")
    action = member_role("Writers", [jane], [read, write])
    iam = run.ctx.iam(MEMBER)
    calls: list[str] = []

    def die_at_first_attach(model, **_):
        calls.append(model.name)
        if model.name == "AttachRolePolicy" and calls.count("AttachRolePolicy") == 1:
            raise InjectedCrash("the process died after CreateRole")

    iam.meta.events.register("before-call.iam", die_at_first_attach)
    with pytest.raises(InjectedCrash):
        run.executor().run(action)
    iam.meta.events.unregister("before-call.iam", die_at_first_attach)
    assert run.entry(action).status == STARTED
    half = read_role_state(iam, "iamc-Writers")
    assert half["managed_policy_arns"] == [] and half["inline_policies"] == {}

    assert run.executor().run(action) == SUCCEEDED

    assert calls.count("CreateRole") == 1
    assert _role_names(run) == ["iamc-Writers"]
    _as_planned(read_role_state(iam, "iamc-Writers"), action)
    entry = run.entry(action)
    # The resumed attempt keeps the first one's record: a rollback deletes the role.
    assert entry.undo == {"role_name": "iamc-Writers", "migration": MIGRATION, "created": True}
    assert run.rollback(action) == [SUCCEEDED]
    assert _role_names(run) == []


def test_a_crash_after_the_last_call_resumes_as_done(run):
    jane = central_user(run.ctx, "jane")
    action = member_role("Readers", [jane], [])
    with pytest.raises(InjectedCrash):
        run.executor(fault=(action.id, "after-call")).run(action)

    assert run.executor().run(action) == SUCCEEDED
    assert _role_names(run) == ["iamc-Readers"]
    assert run.rollback(action) == [SUCCEEDED]
    assert _role_names(run) == []


def test_verify_names_a_role_whose_trust_changed_or_that_is_gone(run):
    jane, joe = central_user(run.ctx, "jane"), central_user(run.ctx, "joe")
    readers, writers = member_role("Readers", [jane], []), member_role("Writers", [jane], [])
    executor = run.executor()
    assert executor.run(readers) == executor.run(writers) == SUCCEEDED
    iam = run.ctx.iam(MEMBER)
    iam.update_assume_role_policy(
        RoleName="iamc-Readers",
        PolicyDocument=json.dumps(member_role("Readers", [joe], []).params["trust_policy"]),
    )
    iam.delete_role_policy(RoleName="iamc-Writers", PolicyName="iamc-access")
    iam.delete_role(RoleName="iamc-Writers")

    assert verify_member_roles(run.ctx, [readers, writers]) == [
        f"role iamc-Readers in {MEMBER}: its trust policy does not name {jane}",
        f"role iamc-Writers in {MEMBER}: missing",
    ]


def test_a_plan_that_would_narrow_the_trust_of_a_role_of_this_migration_is_refused(run):
    jane, joe = central_user(run.ctx, "jane"), central_user(run.ctx, "joe")
    read = customer_policy(run.ctx, MEMBER, "team-read")
    # Another plan of this migration, applied after this one was made, trusts jane and joe.
    with journal(HANDLERS) as other:
        assert other.executor().run(member_role("Readers", [jane, joe], [read])) == SUCCEEDED
    stale = member_role("Readers", [jane], [read])

    with pytest.raises(ConflictError, match=r"trust names .*joe which this plan does not.*re-plan"):
        run.executor().run(stale)

    entry = run.entry(stale)
    assert entry.status == FAILED
    assert (
        f"role iamc-Readers's trust names {joe} which this plan does not: another plan was "
        "applied since this one was made; re-plan"
    ) in entry.error
    # Joe still switches in: the trust was not touched, and a rollback leaves the role.
    trust = read_role_state(run.ctx.iam(MEMBER), "iamc-Readers")["trust_policy"]
    assert trust["Statement"][0]["Principal"]["AWS"] == sorted([jane, joe])
    assert run.rollback(stale) == ["skipped"]
    assert _role_names(run) == ["iamc-Readers"]


def test_a_plan_that_grows_the_trust_of_a_role_of_this_migration_brings_it_to_the_plan(run):
    jane, joe = central_user(run.ctx, "jane"), central_user(run.ctx, "joe")
    with journal(HANDLERS) as before:
        assert before.executor().run(member_role("Readers", [jane], [])) == SUCCEEDED
    action = member_role("Readers", [jane, joe], [])

    assert run.executor().run(action) == SUCCEEDED

    trust = read_role_state(run.ctx.iam(MEMBER), "iamc-Readers")["trust_policy"]
    assert trust == action.params["trust_policy"]


def _trust(iam, document) -> None:
    iam.update_assume_role_policy(RoleName="iamc-Readers", PolicyDocument=json.dumps(document))


def test_verify_accepts_a_trust_a_later_plan_grew_and_names_what_lets_others_in(run):
    jane, joe = central_user(run.ctx, "jane"), central_user(run.ctx, "joe")
    readers = member_role("Readers", [jane], [])
    assert run.executor().run(readers) == SUCCEEDED
    iam = run.ctx.iam(MEMBER)
    # A later plan's trust: jane and joe (its own person) -- jane still switches in.
    grown = member_role("Readers", [jane, joe], []).params["trust_policy"]
    _trust(iam, grown)
    assert verify_member_roles(run.ctx, [readers]) == []

    # The central account's root added: everyone there whose own policy allows it.
    widened = json.loads(json.dumps(grown))
    widened["Statement"][0]["Principal"]["AWS"].append(f"arn:aws:iam::{CENTRAL}:root")
    _trust(iam, widened)
    [problem] = verify_member_roles(run.ctx, [readers])
    assert problem.startswith(f"role iamc-Readers in {MEMBER}: trust to the central account's root")

    # The MFA condition gone.
    without_mfa = json.loads(json.dumps(grown))
    del without_mfa["Statement"][0]["Condition"]
    _trust(iam, without_mfa)
    assert verify_member_roles(run.ctx, [readers]) == [
        f"role iamc-Readers in {MEMBER}: its trust policy lets {jane} in without "
        "Bool aws:MultiFactorAuthPresent = true",
        f"role iamc-Readers in {MEMBER}: trust to IAM users without Bool "
        "aws:MultiFactorAuthPresent = true: a leaked access key alone could switch into the role",
    ]

    # Jane's statement without MFA beside one with it: jane gets in without MFA.
    loose = json.loads(json.dumps(grown))
    loose["Statement"].append(
        {"Effect": "Allow", "Principal": {"AWS": jane}, "Action": "sts:AssumeRole"}
    )
    _trust(iam, loose)
    assert f"its trust policy lets {jane} in without" in verify_member_roles(run.ctx, [readers])[0]

    # Jane dropped (only joe).
    _trust(iam, member_role("Readers", [joe], []).params["trust_policy"])
    assert verify_member_roles(run.ctx, [readers]) == [
        f"role iamc-Readers in {MEMBER}: its trust policy does not name {jane}"
    ]
