"""Waves: which accounts a wave holds, and who created and uses what across waves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import WaveError
from domain.spec import parse_spec
from domain.waves import (
    JournalUse,
    definition_changes,
    organization_sets,
    resolve_waves,
    still_used_by,
)

A, B, C, D = "111111111111", "222222222222", "333333333333", "444444444444"
OU_PROD, OU_PROD_EU, ROOT = "ou-root-prod0001", "ou-root-prodeu01", "r-root"
CHAINS = {
    A: [OU_PROD, ROOT],
    B: [OU_PROD_EU, OU_PROD, ROOT],  # nested: prod/eu
    C: [ROOT],
    D: [ROOT],
}
NODES = {OU_PROD, OU_PROD_EU, ROOT}


def _spec(*waves: dict) -> object:
    return parse_spec({"name": "m", "waves": list(waves)})


def test_waves_resolve_accounts_and_nested_ous():
    spec = _spec(
        {"name": "w1", "include_accounts": [OU_PROD], "exclude_accounts": [A]},
        {"name": "w2", "include_accounts": [A, C]},
    )
    assert resolve_waves(spec, CHAINS, NODES) == {"w1": [B], "w2": [A, C]}


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        (
            [{"name": "w1", "include_accounts": ["999999999999"]}],
            "wave 'w1': account 999999999999 is not an inventoried account of",
        ),
        (
            [{"name": "w1", "include_accounts": ["ou-root-unknown1"]}],
            "wave 'w1': ou-root-unknown1 is not an OU or root of the organization",
        ),
        (
            [
                {"name": "w1", "include_accounts": [OU_PROD]},
                {"name": "w2", "include_accounts": [B]},
            ],
            f"account {B} is in wave 'w1' and in wave 'w2' (through an OU)",
        ),
    ],
)
def test_wave_errors_are_one_line(waves, message):
    with pytest.raises(WaveError) as caught:
        resolve_waves(_spec(*waves), CHAINS, NODES)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        (
            [{"name": "w1", "include_accounts": [A]}, {"name": "w1", "include_accounts": [B]}],
            "wave name 'w1' is used twice",
        ),
        (
            [{"name": "w1", "include_accounts": [A]}, {"name": "w2", "include_accounts": [A]}],
            f"{A} is in wave 'w1' and in wave 'w2'",
        ),
        ([{"name": "w1", "include_accounts": ["*"]}], "list account or OU ids"),
        ([{"name": "w1", "include_accounts": []}], "at least one account"),
    ],
)
def test_the_spec_refuses_ambiguous_waves(waves, message):
    from domain.errors import SpecError

    with pytest.raises(SpecError, match=message):
        _spec(*waves)


def test_a_spec_without_waves_is_one_implicit_wave():
    spec = parse_spec({"name": "m"})
    assert spec.wave(None) is None
    with pytest.raises(WaveError, match="defines no"):
        spec.wave("w1")
    waved = _spec({"name": "w1", "include_accounts": [A]})
    with pytest.raises(WaveError, match=r"name one with --wave \(w1\)"):
        waved.wave(None)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _use(plan_id, wave, kind, target, *, status="succeeded", existed=False, at=0, **params):
    definition = params.pop("definition", None)
    if definition is not None:
        params["definition"] = definition
    return JournalUse(
        plan_id=plan_id,
        wave=wave,
        kind=kind,
        status=status,
        account_id=params.get("account_id"),
        target=target,
        params=params,
        existed_before=existed,
        started=T0 + timedelta(minutes=at),
        finished=T0 + timedelta(minutes=at, seconds=30),
    )


DEF = {"name": "ReadOnlyAccess", "fingerprint": "fp1", "session_duration": "PT8H"}


def test_the_journal_knows_who_created_and_who_uses_each_set():
    uses = [
        _use(1, "wave-1", "create-permission-set", "ReadOnlyAccess", definition=DEF),
        _use(1, "wave-1", "provision-permission-set", "ReadOnlyAccess", account_id=A),
        _use(
            2,
            "wave-2",
            "create-permission-set",
            "ReadOnlyAccess",
            status="adopted",
            existed=True,
            at=5,
            definition=DEF,
        ),
        _use(2, "wave-2", "provision-permission-set", "ReadOnlyAccess", account_id=C, at=5),
    ]
    [known] = organization_sets(uses).values()
    assert (known.name, known.ours, known.created_by) == ("ReadOnlyAccess", True, "wave-1 (plan 1)")
    assert known.accounts == [A, C]
    # Wave 1 may not delete what wave 2 uses; wave 2 never deleted it (adopted) anyway.
    assert still_used_by("create-permission-set", "ReadOnlyAccess", {}, None, 1, uses) == [
        "wave-2 (plan 2)"
    ]
    released = [*uses[:2], *(JournalUse(**{**vars(u), "released": True}) for u in uses[2:])]
    assert still_used_by("create-permission-set", "ReadOnlyAccess", {}, None, 1, released) == []


def test_a_central_group_and_membership_another_wave_adopted_stay_on_rollback():
    member = {"group_name": "iamc-Dev", "user_name": "jane@example.com"}
    uses = [
        _use(1, "wave-1", "create-access-group", "iamc-Dev", group_name="iamc-Dev"),
        _use(1, "wave-1", "add-group-member", "jane -> iamc-Dev", **member),
        _use(
            2,
            "wave-2",
            "create-access-group",
            "iamc-Dev",
            status="adopted",
            existed=True,
            at=5,
            group_name="iamc-Dev",
        ),
        _use(
            2,
            "wave-2",
            "add-group-member",
            "jane -> iamc-Dev",
            status="adopted",
            existed=True,
            at=5,
            **member,
        ),
        _use(
            2,
            "wave-2",
            "add-group-member",
            "joe -> iamc-Dev",
            at=5,
            group_name="iamc-Dev",
            user_name="joe@example.com",
        ),
    ]
    # Jane is in both waves: rolling wave 1 back must not take her out of the group.
    assert still_used_by("add-group-member", "", member, None, 1, uses) == ["wave-2 (plan 2)"]
    assert still_used_by("create-access-group", "", {"group_name": "iamc-Dev"}, None, 1, uses) == [
        "wave-2 (plan 2)"
    ]
    other = {"group_name": "iamc-Ops", "user_name": "jane@example.com"}
    assert still_used_by("add-group-member", "", other, None, 1, uses) == []
    released = [*uses[:2], *(JournalUse(**{**vars(u), "released": True}) for u in uses[2:])]
    assert still_used_by("add-group-member", "", member, None, 1, released) == []


def test_a_member_role_another_plan_relies_on_stays_on_rollback_in_its_account_only():
    role = {"role_name": "iamc-Dev", "access": "Dev"}
    uses = [
        _use(1, "wave-1", "create-member-role", "iamc-Dev", account_id=A, **role),
        _use(1, "wave-1", "create-member-role", "iamc-Dev", account_id=B, **role),
        # A later plan brought A's role to its plan (its people besides wave-1's).
        _use(2, "wave-1", "create-member-role", "iamc-Dev", at=5, account_id=A, **role),
        _use(
            3,
            "wave-2",
            "create-member-role",
            "iamc-Dev",
            status="failed",
            at=9,
            account_id=B,
            **role,
        ),
    ]
    dev = {"role_name": "iamc-Dev", "access": "Dev"}
    # Rolling back plan 1 must not delete A's role: plan 2's people switch in through it.
    assert still_used_by("create-member-role", "iamc-Dev", dev, None, 1, uses, A) == [
        "wave-1 (plan 2)"
    ]
    # The same name in B is another role: nobody else did it (plan 3 failed).
    assert still_used_by("create-member-role", "iamc-Dev", dev, None, 1, uses, B) == []
    other = {"role_name": "iamc-Ops", "access": "Ops"}
    assert still_used_by("create-member-role", "iamc-Ops", other, None, 1, uses, A) == []
    assert still_used_by("create-member-role", "iamc-Dev", dev, None, 2, uses, A) == [
        "wave-1 (plan 1)"
    ]
    released = [*uses[:2], JournalUse(**{**vars(uses[2]), "released": True}), uses[3]]
    assert still_used_by("create-member-role", "iamc-Dev", dev, None, 1, released, A) == []


def test_a_central_access_policy_another_plan_put_stays_on_rollback():
    policy = {
        "principal_type": "group",
        "principal_name": "iamc-Dev",
        "policy_name": "iamc-assume-Dev",
    }
    uses = [
        _use(1, "wave-1", "put-access-policy", "iamc-assume-Dev", account_id=C, **policy),
        _use(
            2,
            "wave-2",
            "put-access-policy",
            "iamc-assume-Dev",
            at=5,
            account_id=C,
            **policy,
            document={"Statement": []},
        ),
        _use(
            3,
            "wave-3",
            "put-access-policy",
            "iamc-assume-Dev",
            at=9,
            account_id=C,
            **{**policy, "principal_type": "role"},
        ),
    ]
    assert still_used_by("put-access-policy", "", policy, None, 1, uses, C) == ["wave-2 (plan 2)"]
    assert still_used_by("put-access-policy", "", policy, None, 2, uses, C) == ["wave-1 (plan 1)"]
    # A federated role's policy of the same name is another policy.
    on_role = {**policy, "principal_type": "role"}
    assert still_used_by("put-access-policy", "", on_role, None, 3, uses, C) == []
    released = [uses[0], JournalUse(**{**vars(uses[1]), "released": True}), uses[2]]
    assert still_used_by("put-access-policy", "", policy, None, 1, released, C) == []


def test_an_update_is_used_only_by_plans_that_came_after_it():
    updated = {**DEF, "session_duration": "PT4H"}
    uses = [
        _use(1, "wave-1", "create-permission-set", "ReadOnlyAccess", definition=DEF),
        _use(2, "wave-2", "update-permission-set", "ReadOnlyAccess", at=5, definition=updated),
    ]
    assert organization_sets(uses)["fp1"].definition["session_duration"] == "PT4H"
    finished = uses[1].finished
    assert still_used_by("update-permission-set", "ReadOnlyAccess", {}, finished, 2, uses) == []
    later = _use(3, "wave-3", "create-permission-set", "ReadOnlyAccess", status="adopted",
                 existed=True, at=9, definition=updated)  # fmt: skip
    assert still_used_by(
        "update-permission-set", "ReadOnlyAccess", {}, finished, 2, [*uses, later]
    ) == ["wave-3 (plan 3)"]


def test_definition_changes_name_what_an_update_changes():
    assert definition_changes({**DEF, "session_duration": "PT4H"}, DEF) == [
        "session duration PT8H -> PT4H"
    ]
    assert definition_changes({**DEF, "sources": ["other"]}, DEF) == []
