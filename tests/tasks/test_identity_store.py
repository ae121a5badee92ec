"""Reading the Identity Center instance and its identity store (moto, in process)."""

from __future__ import annotations

import pytest

from domain.errors import SpecError
from tasks.aws import AwsSessions
from tasks.identity_store import find_instance, read_identity_store


@pytest.fixture
def identity_store(aws):
    """Five users (one without email), three groups, memberships; the instance moto makes."""
    session = AwsSessions(region="us-east-1").management()
    instance = session.client("sso-admin").list_instances()["Instances"][0]
    store_id = instance["IdentityStoreId"]
    client = session.client("identitystore")
    ids = {}
    for name in ("jane.doe", "john.smith", "alex.kim", "mia.schmidt"):
        ids[name] = client.create_user(
            IdentityStoreId=store_id,
            UserName=f"{name}@example.com",
            DisplayName=name.replace(".", " ").title(),
            Name={"GivenName": name.split(".")[0], "FamilyName": name.split(".")[1]},
            Emails=[{"Value": f"{name}@example.com", "Type": "work", "Primary": True}],
        )["UserId"]
    ids["robot"] = client.create_user(
        IdentityStoreId=store_id,
        UserName="robot",
        DisplayName="Robot",
        Name={"GivenName": "Ro", "FamilyName": "Bot"},
    )["UserId"]
    members = {
        "developers": ["jane.doe", "john.smith", "alex.kim"],
        "platform-admins": ["jane.doe"],
        "empty": [],
    }
    group_ids = {}
    for group, names in members.items():
        group_ids[group] = client.create_group(IdentityStoreId=store_id, DisplayName=group)[
            "GroupId"
        ]
        for name in names:
            client.create_group_membership(
                IdentityStoreId=store_id, GroupId=group_ids[group], MemberId={"UserId": ids[name]}
            )
    return session, instance, ids, group_ids, members


def test_reads_every_user_group_and_membership_across_pages(identity_store):
    session, instance, ids, group_ids, members = identity_store
    calls = []
    session.events.register(
        "before-call.identitystore.*", lambda model, **_: calls.append(model.name)
    )

    contents = read_identity_store(session, instance["IdentityStoreId"], page_size=2)

    assert contents.identity_store_id == instance["IdentityStoreId"]
    users = {u.user_name: u for u in contents.users}
    assert sorted(users) == [
        "alex.kim@example.com",
        "jane.doe@example.com",
        "john.smith@example.com",
        "mia.schmidt@example.com",
        "robot",
    ]
    jane = users["jane.doe@example.com"]
    assert jane.user_id == ids["jane.doe"]
    assert jane.emails == ["jane.doe@example.com"] and jane.display_name == "Jane Doe"
    assert users["robot"].emails == []
    groups = {g.display_name: g for g in contents.groups}
    assert set(groups) == set(members)
    for name, expected in members.items():
        assert groups[name].group_id == group_ids[name]
        assert groups[name].member_ids == sorted(ids[m] for m in expected)
    # Pages of two: 5 users -> 3 calls, 3 groups -> 2, developers' 3 members -> 2.
    assert calls.count("ListUsers") == 3
    assert calls.count("ListGroups") == 2
    assert calls.count("ListGroupMemberships") == 2 + 1 + 1


def test_find_instance_takes_the_only_one_or_the_pinned_one(identity_store):
    session, instance, *_ = identity_store
    found = find_instance(session)
    assert found.identity_store_id == instance["IdentityStoreId"]
    assert found.instance_arn == instance["InstanceArn"]
    assert find_instance(session, identity_store_id=instance["IdentityStoreId"]) == found
    assert find_instance(session, instance_arn=instance["InstanceArn"]) == found


def test_a_pinned_instance_that_is_not_visible_is_a_spec_error(identity_store):
    session, instance, *_ = identity_store
    with pytest.raises(SpecError) as caught:
        find_instance(session, identity_store_id="d-0000000000", spec_path="spec.toml")
    assert caught.value.problems[0][0] == "mapping.identity_store_id"
    assert instance["IdentityStoreId"] in str(caught.value)
