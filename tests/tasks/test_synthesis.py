"""Access synthesis: fingerprints, shared permission sets, quotas, names and group routes."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from domain.access import RequiredPolicy, SynthesisResult
from domain.permission_set_naming import NAME_PATTERN
from domain.permission_set_quotas import MAX_INLINE_BYTES, MAX_INLINE_CHARS
from domain.policy_documents import canonical_json, normalize_policy, policy_fingerprint
from domain.records import (
    Account,
    AccountInventory,
    AttachedPolicy,
    Group,
    GroupMapping,
    IdentityGroup,
    InlinePolicy,
    ManagedPolicy,
    MatchStatus,
    User,
    UserMapping,
)
from domain.synthesis import synthesize

A1 = "111111111111"
A2 = "222222222222"
AWS = "arn:aws:iam::aws:policy/"
READ_ONLY = AWS + "ReadOnlyAccess"
S3_FULL = AWS + "AmazonS3FullAccess"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def attached(*arns: str) -> list[AttachedPolicy]:
    return [AttachedPolicy(arn=arn, name=arn.rsplit("/", 1)[-1]) for arn in arns]


def aws_policy(arn: str) -> ManagedPolicy:
    return ManagedPolicy(arn=arn, name=arn.rsplit("/", 1)[-1], aws_managed=True, document=doc())


def customer_policy(
    account_id: str, name: str, document: dict[str, Any] | None, path: str = "/"
) -> ManagedPolicy:
    return ManagedPolicy(
        arn=f"arn:aws:iam::{account_id}:policy{path}{name}",
        name=name,
        path=path,
        document=document,
    )


def user(
    name: str,
    *,
    managed: tuple[str, ...] = (),
    inline: tuple[InlinePolicy, ...] = (),
    groups: tuple[str, ...] = (),
    boundary: str | None = None,
) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper()}",
        arn=f"arn:aws:iam::000000000000:user/{name}",
        attached_policies=attached(*managed),
        inline_policies=list(inline),
        groups=list(groups),
        permissions_boundary_arn=boundary,
    )


def group(
    name: str, *, managed: tuple[str, ...] = (), inline: tuple[InlinePolicy, ...] = ()
) -> Group:
    return Group(
        name=name,
        group_id=f"AGPA{name.upper()}",
        arn=f"arn:aws:iam::000000000000:group/{name}",
        attached_policies=attached(*managed),
        inline_policies=list(inline),
    )


def inventory(
    account_id: str,
    users: list[User],
    groups: list[Group] | None = None,
    policies: list[ManagedPolicy] | None = None,
) -> AccountInventory:
    return AccountInventory(
        account=Account(account_id=account_id),
        users=users,
        groups=groups or [],
        managed_policies=policies or [],
    )


def matched(account_id: str, iam_user: str, identity: str | None = None) -> UserMapping:
    identity = identity or f"id-{iam_user}"
    return UserMapping(
        account_id=account_id,
        iam_user=iam_user,
        status=MatchStatus.MATCHED,
        identity_user_id=identity,
        identity_user_name=f"{iam_user}@example.com",
    )


def group_mapping(
    account_id: str, iam_group: str, idp_group: str, status: MatchStatus = MatchStatus.MATCHED
) -> GroupMapping:
    return GroupMapping(
        account_id=account_id,
        iam_group=iam_group,
        status=status,
        identity_group_id=idp_group if status == MatchStatus.MATCHED else None,
        identity_group_name=idp_group.removeprefix("gid-"),
    )


def kinds(result: SynthesisResult) -> list[str]:
    return [f.kind for f in result.findings]


# -- Normalisation -------------------------------------------------------------------------

BASE = doc(
    {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
    {
        "Effect": "Deny",
        "Action": "ec2:TerminateInstances",
        "Resource": ["*"],
        "Condition": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}},
    },
)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(
            {
                "Statement": [
                    {
                        "Resource": "*",
                        "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}},
                        "Action": ["ec2:TerminateInstances"],
                        "Effect": "Deny",
                    },
                    {"Resource": ["arn:aws:s3:::b/*"], "Action": "s3:GetObject", "Effect": "Allow"},
                ],
                "Version": "2012-10-17",
            },
            id="key order, statement order, single items, no Sid",
        ),
        pytest.param(json.dumps(BASE, indent=4), id="whitespace"),
        pytest.param(
            doc(
                {
                    "Sid": "Other",
                    "Effect": "Allow",
                    "Action": ["S3:getobject", "s3:GetObject"],
                    "Resource": "arn:aws:s3:::b/*",
                },
                BASE["Statement"][1],
                BASE["Statement"][1],
            ),
            id="action case, duplicate statements, different Sid",
        ),
        pytest.param({"Statement": BASE["Statement"]}, id="Version defaults to 2012-10-17"),
    ],
)
def test_equivalent_documents_share_a_fingerprint(variant):
    assert policy_fingerprint(variant) == policy_fingerprint(BASE)
    assert normalize_policy(variant) == normalize_policy(BASE)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["Statement"][0].update(Resource="arn:aws:s3:::other/*"),
        lambda d: d["Statement"][0].update(Effect="Deny"),
        lambda d: d["Statement"][0].update(Action=["s3:GetObject", "s3:PutObject"]),
        lambda d: d["Statement"][1]["Condition"]["StringEquals"].update(
            {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}
        ),
        lambda d: d["Statement"].pop(),
    ],
)
def test_different_documents_have_different_fingerprints(change):
    other = copy.deepcopy(BASE)
    change(other)
    assert policy_fingerprint(other) != policy_fingerprint(BASE)


def test_output_form_keeps_sid_and_spelling_but_lowercases_the_prefix():
    shown = normalize_policy(
        doc(allow(["S3:GetObject", "s3:getobject", "s3:ListBucket"]), {"Sid": "X", **allow("*")}),
        for_output=True,
    )
    actions = [s["Action"] for s in shown["Statement"]]
    assert ["s3:GetObject", "s3:ListBucket"] in actions
    assert any(s.get("Sid") == "X" for s in shown["Statement"])
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


# -- Sharing -------------------------------------------------------------------------------


def test_same_policies_in_different_order_share_one_permission_set():
    first = user(
        "jane",
        managed=(READ_ONLY, S3_FULL),
        inline=(
            InlinePolicy("a", doc(allow("sqs:SendMessage"))),
            InlinePolicy("b", doc(allow(["logs:GetLogEvents"], ["*"]))),
        ),
    )
    second = user(
        "john",
        managed=(S3_FULL, READ_ONLY),
        inline=(
            InlinePolicy("one", doc(allow(["LOGS:GetLogEvents"]), allow(["sqs:SendMessage"]))),
        ),
    )
    result = synthesize(
        [
            inventory(A1, [first], policies=[aws_policy(READ_ONLY), aws_policy(S3_FULL)]),
            inventory(A2, [second], policies=[aws_policy(S3_FULL), aws_policy(READ_ONLY)]),
        ],
        [matched(A1, "jane"), matched(A2, "john")],
        [],
        [],
    )
    assert len(result.permission_sets) == 1
    permission_set = result.permission_sets[0]
    assert permission_set.aws_managed_policy_arns == [S3_FULL, READ_ONLY]
    assert len(permission_set.inline_policy["Statement"]) == 2
    # The description says what the set grants, never whom or where: the same in every wave.
    assert permission_set.description == (
        "IAM access: AWS-managed AmazonS3FullAccess, ReadOnlyAccess; 2 inline statements; "
        f"access {permission_set.fingerprint[:12]} (iamc)"
    )
    assert [
        (a.account_id, a.principal_type, a.principal_id, a.reason) for a in result.assignments
    ] == [
        (A1, "USER", "id-jane", "user jane"),
        (A2, "USER", "id-john", "user john"),
    ]
    assert {a.permission_set_name for a in result.assignments} == {permission_set.name}
    assert result.findings == []


def test_inline_policies_of_user_and_groups_merge_into_one_policy():
    developers = group(
        "developers",
        inline=(
            InlinePolicy("deploy", doc({"Sid": "Deploy", **allow("lambda:UpdateFunctionCode")})),
        ),
    )
    ops = group("ops", inline=(InlinePolicy("ops", doc({"Sid": "Deploy", **allow("ecs:*")})),))
    jane = user(
        "jane",
        groups=("developers", "ops"),
        inline=(InlinePolicy("own", doc(allow("lambda:UpdateFunctionCode"), allow("sqs:*"))),),
    )
    result = synthesize([inventory(A1, [jane], [developers, ops])], [matched(A1, "jane")], [], [])
    [permission_set] = result.permission_sets
    statements = permission_set.inline_policy["Statement"]
    assert len(statements) == 3  # lambda (deduplicated), ecs, sqs
    sids = [s["Sid"] for s in statements if "Sid" in s]
    assert len(sids) == len(set(sids)) == 2
    assert permission_set.sources == [
        "group developers",
        "group ops",
        "inline deploy",
        "inline ops",
        "inline own",
    ]


def test_customer_policy_with_same_name_but_different_documents_is_not_shared():
    def setup(document_2: dict[str, Any]) -> SynthesisResult:
        return synthesize(
            [
                inventory(
                    A1,
                    [user("jane", managed=(f"arn:aws:iam::{A1}:policy/team/app-read",))],
                    policies=[customer_policy(A1, "app-read", doc(allow("s3:Get*")), "/team/")],
                ),
                inventory(
                    A2,
                    [user("john", managed=(f"arn:aws:iam::{A2}:policy/team/app-read",))],
                    policies=[customer_policy(A2, "app-read", document_2, "/team/")],
                ),
            ],
            [matched(A1, "jane"), matched(A2, "john")],
            [],
            [],
        )

    different = setup(doc(allow("s3:*")))
    assert len(different.permission_sets) == 2
    assert all(
        p.customer_managed_policies == [{"name": "app-read", "path": "/team/"}]
        for p in different.permission_sets
    )
    same = setup(doc(allow(["s3:get*"])))
    [shared] = same.permission_sets
    assert shared.name.startswith("app-read-")
    assert same.required_customer_policies == [
        RequiredPolicy(A1, "app-read", "/team/"),
        RequiredPolicy(A2, "app-read", "/team/"),
    ]


def test_boundary_is_part_of_the_access():
    boundary = f"arn:aws:iam::{A1}:policy/boundary"
    result = synthesize(
        [
            inventory(
                A1,
                [
                    user("jane", managed=(READ_ONLY,), boundary=boundary),
                    user("john", managed=(READ_ONLY,)),
                ],
                policies=[customer_policy(A1, "boundary", doc(allow("s3:*")))],
            )
        ],
        [matched(A1, "jane"), matched(A1, "john")],
        [],
        [],
    )
    by_boundary = {bool(p.permissions_boundary): p for p in result.permission_sets}
    assert by_boundary[True].permissions_boundary == {
        "customer_managed_policy_reference": {"name": "boundary", "path": "/"}
    }
    assert by_boundary[False].name == "ReadOnlyAccess"
    assert RequiredPolicy(A1, "boundary", "/") in result.required_customer_policies


def test_only_matched_users_are_synthesized():
    result = synthesize(
        [inventory(A1, [user("jane", managed=(READ_ONLY,)), user("bob", managed=(S3_FULL,))])],
        [
            matched(A1, "jane"),
            UserMapping(account_id=A1, iam_user="bob", status=MatchStatus.AMBIGUOUS),
        ],
        [],
        [],
    )
    assert [a.reason for a in result.assignments] == ["user jane"]


# -- Quotas --------------------------------------------------------------------------------


def test_over_the_managed_policy_quota_is_blocking_and_names_the_numbers():
    arns = tuple(f"{AWS}Policy{n:02d}" for n in range(11))
    result = synthesize(
        [inventory(A1, [user("jane", managed=arns)], policies=[aws_policy(a) for a in arns])],
        [matched(A1, "jane")],
        [],
        [],
    )
    [finding] = result.blocking
    assert finding.kind == "quota-managed-policies"
    assert finding.account_id == A1
    assert "11 managed policies > 10 per role" in finding.message
    assert "20" in finding.message  # Identity Center's own limit, explained
    assert "user jane" in finding.message and A1 in finding.message
    assert finding.details["managed_policies"] == 11 and finding.details["limit"] == 10
    assert len(result.permission_sets) == 1  # still shown, so the plan reads whole


def test_inline_policy_over_both_size_limits_names_the_numbers():
    big = InlinePolicy(
        "big",
        doc(
            *(allow("s3:GetObject", f"arn:aws:s3:::bucket-{n:04d}/{'x' * 400}") for n in range(80))
        ),
    )
    result = synthesize(
        [inventory(A1, [user("jane", inline=(big,))])], [matched(A1, "jane")], [], []
    )
    found = {f.kind: f for f in result.blocking}
    assert set(found) == {"quota-inline-size", "quota-inline-chars"}
    size = found["quota-inline-size"]
    assert size.details["bytes"] > MAX_INLINE_BYTES
    assert f"{size.details['bytes']:,} bytes > 32,768 bytes" in size.message
    assert "user jane" in size.message and A1 in size.message
    chars = found["quota-inline-chars"]
    assert f"{chars.details['characters']:,} non-whitespace characters > 10,240" in chars.message


def test_inline_character_limit_is_the_stricter_one():
    # ~11,000 characters: within Identity Center's 32 KB, over IAM's 10,240 for a role.
    medium = InlinePolicy(
        "medium",
        doc(
            *(allow("s3:GetObject", f"arn:aws:s3:::bucket-{n:04d}/{'y' * 200}") for n in range(45))
        ),
    )
    result = synthesize(
        [inventory(A1, [user("jane", inline=(medium,))])], [matched(A1, "jane")], [], []
    )
    [finding] = result.blocking
    assert finding.kind == "quota-inline-chars"
    assert MAX_INLINE_CHARS < finding.details["characters"] < MAX_INLINE_BYTES


def test_whitespace_counts_for_bytes_but_not_for_characters():
    spaced = InlinePolicy(
        "spaced",
        doc(allow("s3:GetObject", Condition={"StringLike": {"s3:prefix": "a" + " " * 33_000}})),
    )
    result = synthesize(
        [inventory(A1, [user("jane", inline=(spaced,))])], [matched(A1, "jane")], [], []
    )
    assert [f.kind for f in result.blocking] == ["quota-inline-size"]


def test_permission_set_count_quotas():
    users = [user(f"u{n}", managed=(f"{AWS}Policy{n}",)) for n in range(3)]
    result = synthesize(
        [inventory(A1, users)],
        [matched(A1, u.name) for u in users],
        [],
        [],
        max_permission_sets=2,
        max_per_account=2,
    )
    found = {f.kind: f for f in result.blocking}
    assert (
        "3 permission sets > 2 per Identity Center instance"
        in found["quota-permission-sets"].message
    )
    per_account = found["quota-permission-sets-per-account"]
    assert per_account.account_id == A1 and per_account.details == {
        "permission_sets": 3,
        "limit": 2,
    }


def test_missing_customer_policy_document_is_blocking():
    arn = f"arn:aws:iam::{A1}:policy/app-read"
    result = synthesize(
        [
            inventory(
                A1,
                [user("jane", managed=(arn, READ_ONLY))],
                policies=[customer_policy(A1, "app-read", None)],
            )
        ],
        [matched(A1, "jane")],
        [],
        [],
    )
    [finding] = result.blocking
    assert finding.kind == "policy-document-missing"
    assert arn in finding.message and "user jane" in finding.message
    assert result.assignments == []


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="session duration"):
        synthesize([], [], [], [], session_duration="PT13H")
    with pytest.raises(ValueError, match="prefix"):
        synthesize([], [], [], [], name_prefix="has space")


# -- Names ---------------------------------------------------------------------------------


def _mixed_org() -> tuple[list[AccountInventory], list[UserMapping]]:
    inventories, mappings = [], []
    for account_id in (A1, A2, "333333333333"):
        developers = group(
            "developers",
            managed=(READ_ONLY,),
            inline=(InlinePolicy("deploy", doc(allow(["lambda:*", "ecs:*"]))),),
        )
        users = [
            user("alice", groups=("developers",)),
            user("bob", groups=("developers",), inline=(InlinePolicy("x", doc(allow("sqs:*"))),)),
            user("carol", managed=(READ_ONLY,)),
            user("dave", managed=(READ_ONLY, S3_FULL)),
            user(
                f"ünïcode-{account_id[:1]}",
                managed=(S3_FULL,),
                inline=(InlinePolicy("p", doc(allow("sns:*", f"arn:aws:sns:::{account_id}"))),),
            ),
        ]
        inventories.append(inventory(account_id, users, [developers]))
        mappings.extend(matched(account_id, u.name) for u in users)
    return inventories, mappings


def _shuffled(inventories: list[AccountInventory], mappings: list[UserMapping], seed: int):
    rng = random.Random(seed)
    inventories = copy.deepcopy(inventories)
    for inv in inventories:
        rng.shuffle(inv.users)
        rng.shuffle(inv.groups)
        for u in inv.users:
            rng.shuffle(u.attached_policies)
            rng.shuffle(u.inline_policies)
            for p in u.inline_policies:
                rng.shuffle(p.document["Statement"])
    rng.shuffle(inventories)
    mappings = list(mappings)
    rng.shuffle(mappings)
    return inventories, mappings


def test_names_are_valid_readable_and_stable_across_input_order():
    inventories, mappings = _mixed_org()
    reference = synthesize(inventories, mappings, [], [])
    names = [p.name for p in reference.permission_sets]
    assert len(names) == len(set(names))
    for name in names:
        assert NAME_PATTERN.fullmatch(name) and len(name) <= 32, name
    assert "ReadOnlyAccess" in names  # carol: one AWS-managed policy, nothing else
    # alice: the group's access, named after its policies (never after its holders).
    assert any(n.startswith("ReadOnlyAccess-") for n in names)
    for p in reference.permission_sets:
        assert len(p.description) <= 700
    for seed in range(5):
        again = synthesize(*_shuffled(inventories, mappings, seed), [], [])
        assert again == reference


def test_name_prefix_and_long_stems_stay_within_32_characters():
    long_name = "a-very-long-iam-user-name-that-goes-on-and-on"
    result = synthesize(
        [inventory(A1, [user(long_name, managed=(READ_ONLY, S3_FULL))])],
        [matched(A1, long_name)],
        [],
        [],
        name_prefix="iamc-",
    )
    [permission_set] = result.permission_sets
    assert permission_set.name.startswith("iamc-AmazonS3FullAccess")
    assert len(permission_set.name) == 32
    assert permission_set.name.endswith("-" + permission_set.fingerprint[:8])


# -- Group routes --------------------------------------------------------------------------


def _team(
    *,
    idp_members: list[str],
    status: MatchStatus = MatchStatus.MATCHED,
    boundary: str | None = None,
) -> SynthesisResult:
    developers = group(
        "developers",
        managed=(READ_ONLY,),
        inline=(InlinePolicy("deploy", doc(allow("lambda:*"))),),
    )
    users = [
        user("alice", groups=("developers",), boundary=boundary),
        user("bob", groups=("developers",)),
        user("carol", groups=("developers",), inline=(InlinePolicy("q", doc(allow("sqs:*"))),)),
    ]
    return synthesize(
        [inventory(A1, users, [developers], [customer_policy(A1, "fence", doc(allow("*")))])],
        [matched(A1, u.name) for u in users],
        [group_mapping(A1, "developers", "gid-devs", status)],
        [IdentityGroup(group_id="gid-devs", display_name="devs", member_ids=idp_members)],
    )


def _assigned(result: SynthesisResult) -> list[tuple[str, str]]:
    return [(a.principal_type, a.principal_id) for a in result.assignments]


def test_group_to_group_when_membership_matches():
    result = _team(idp_members=["id-alice", "id-bob", "id-carol"])
    assert sorted(_assigned(result)) == [("GROUP", "gid-devs"), ("USER", "id-carol")]
    [group_assignment] = [a for a in result.assignments if a.principal_type == "GROUP"]
    assert group_assignment.reason == "group developers"
    assert group_assignment.principal_name == "devs"
    # carol keeps one session with everything: her set has the group's policies and her own.
    carol_set = next(
        p
        for p in result.permission_sets
        if p.name
        == next(a.permission_set_name for a in result.assignments if a.reason == "user carol")
    )
    assert carol_set.aws_managed_policy_arns == [READ_ONLY]
    assert len(carol_set.inline_policy["Statement"]) == 2
    assert "access-widened" not in kinds(result)


def test_per_user_when_the_group_is_not_matched():
    result = _team(idp_members=["id-alice", "id-bob", "id-carol"], status=MatchStatus.UNMATCHED)
    assert sorted(_assigned(result)) == [
        ("USER", "id-alice"),
        ("USER", "id-bob"),
        ("USER", "id-carol"),
    ]
    # alice and bob have the group's access only: one shared set named after its policies.
    alice_bob = {a.permission_set_name for a in result.assignments if a.principal_id != "id-carol"}
    [name] = alice_bob
    assert name.startswith("ReadOnlyAccess-")


def test_member_missing_from_the_idp_group_is_assigned_per_user():
    result = _team(idp_members=["id-alice", "id-carol"])
    assert ("USER", "id-bob") in _assigned(result)
    assert ("GROUP", "gid-devs") in _assigned(result)
    assert "group-member-not-in-idp-group" in kinds(result)


def test_a_member_with_a_boundary_disables_the_group_route():
    result = _team(
        idp_members=["id-alice", "id-bob", "id-carol"], boundary=f"arn:aws:iam::{A1}:policy/fence"
    )
    assert all(t == "USER" for t, _ in _assigned(result))
    assert len(result.assignments) == 3
    [info] = [f for f in result.findings if f.kind == "group-route-boundary"]
    assert info.severity == "info" and "alice" in info.message and "boundary" in info.message
    alice_set = next(
        p
        for p in result.permission_sets
        if p.name
        == next(a.permission_set_name for a in result.assignments if a.reason == "user alice")
    )
    assert alice_set.permissions_boundary == {
        "customer_managed_policy_reference": {"name": "fence", "path": "/"}
    }


def test_extra_idp_group_members_widen_access_with_a_warning():
    result = _team(idp_members=["id-alice", "id-bob", "id-carol", "id-mallory", "id-trent"])
    [warning] = [f for f in result.findings if f.kind == "access-widened"]
    assert warning.severity == "warning" and warning.account_id == A1
    assert "developers" in warning.message and "2 identity(ies) gain it" in warning.message
    assert warning.details["gaining_identity_ids"] == ["id-mallory", "id-trent"]


# -- Scale ---------------------------------------------------------------------------------


def test_ten_thousand_users_synthesize_in_one_pass():
    inventories, mappings, group_mappings, idp_groups = [], [], [], []
    team_policy = doc(allow(["dynamodb:GetItem", "dynamodb:Query"], "*"))
    for a in range(500):
        account_id = f"{100000000000 + a}"
        shared = customer_policy(account_id, "team-read", team_policy)
        groups = [
            group(
                "developers",
                managed=(READ_ONLY,),
                inline=(InlinePolicy("d", doc(allow("lambda:*"))),),
            ),
            group("admins", managed=(AWS + "AdministratorAccess",)),
        ]
        users = []
        for n in range(20):
            own = (InlinePolicy("own", doc(allow("s3:*", f"arn:aws:s3:::u{n}-{a % 50}"))),)
            users.append(
                user(
                    f"user{n}",
                    groups=("developers",) if n % 4 else ("admins",),
                    managed=(shared.arn,) if n % 3 == 0 else (),
                    inline=own if n % 5 == 0 else (),
                )
            )
        inventories.append(inventory(account_id, users, groups, [shared, aws_policy(READ_ONLY)]))
        mappings.extend(matched(account_id, u.name, f"id-{u.name}-{a}") for u in users)
        group_mappings.append(group_mapping(account_id, "admins", f"gid-admins-{a}"))
        idp_groups.append(
            IdentityGroup(
                group_id=f"gid-admins-{a}",
                display_name=f"admins-{a}",
                member_ids=[f"id-user{n}-{a}" for n in range(0, 20, 4)],
            )
        )
    result = synthesize(inventories, mappings, group_mappings, idp_groups)
    assert len(result.assignments) > 7_000
    assert len(result.permission_sets) < 300  # identical access is shared across accounts
    assert len({p.name for p in result.permission_sets}) == len(result.permission_sets)
    assert not result.blocking


def test_clashing_names_get_more_hash_digits():
    from domain.permission_set_naming import unique_names as _unique_names

    same_start = {"abcdef12" + "0" * 56: ("team", False), "abcdef12" + "1" * 56: ("team", False)}
    names = _unique_names(same_start, "")
    assert sorted(names.values()) == ["team-abcdef120000", "team-abcdef121111"]


def test_policy_variables_in_an_unversioned_policy_are_flagged():
    legacy = InlinePolicy(
        "home", {"Statement": [allow("s3:*", "arn:aws:s3:::home/${aws:username}/*")]}
    )
    result = synthesize(
        [inventory(A1, [user("jane", inline=(legacy,))])], [matched(A1, "jane")], [], []
    )
    [warning] = [f for f in result.findings if f.kind == "policy-version-changed"]
    assert warning.severity == "warning" and "user:jane/home" in warning.message


# -- waves: a set's name and description are functions of its access -----------------------------


def _one_wave(account_id: str, holder: str, sid: str, extra_users: int = 0) -> SynthesisResult:
    """jane (or another holder) with ReadOnlyAccess plus one inline statement."""
    statement = {**allow(["s3:GetObject"]), "Sid": sid}
    users = [
        user(holder, managed=(READ_ONLY,), inline=(InlinePolicy(f"{holder}-s3", doc(statement)),))
    ]
    users += [user(f"extra{n}", managed=(READ_ONLY,)) for n in range(extra_users)]
    return synthesize(
        [inventory(account_id, users, policies=[aws_policy(READ_ONLY)])],
        [matched(account_id, u.name) for u in users],
        [],
        [],
    )


def test_the_same_access_gets_the_same_name_and_description_in_any_wave():
    wave_one = _one_wave(A1, "jane", "ReadS3")
    # Another account, another holder with another policy name and Sid, more sets around.
    wave_two = _one_wave(A2, "john", "Other", extra_users=3)
    shared = {p.fingerprint: p for p in wave_two.permission_sets}
    [first] = [p for p in wave_one.permission_sets]
    second = shared[first.fingerprint]
    assert (second.name, second.description) == (first.name, first.description)
    assert first.name == f"ReadOnlyAccess-{first.fingerprint[:8]}"
    assert "jane" not in first.description and "1 user" not in first.description


def test_a_known_set_keeps_its_name_and_document_and_no_new_set_takes_its_name():
    from domain.access import KnownPermissionSet

    wave_one = _one_wave(A1, "jane", "ReadS3")
    [first] = wave_one.permission_sets
    legacy = KnownPermissionSet(name="jane-legacy-name", inline_policy=first.inline_policy)
    # Wave 2's statement has another Sid: same access, so the organization's document stays.
    wave_two = synthesize(
        [
            inventory(
                A2,
                [
                    user(
                        "john",
                        managed=(READ_ONLY,),
                        inline=(InlinePolicy("p", doc({**allow(["s3:GetObject"]), "Sid": "X"})),),
                    ),
                    user("carol", managed=(READ_ONLY,)),
                ],
                policies=[aws_policy(READ_ONLY)],
            )
        ],
        [matched(A2, "john"), matched(A2, "carol")],
        [],
        [],
        known={first.fingerprint: legacy, "another-access": KnownPermissionSet("ReadOnlyAccess")},
    )
    by_fp = {p.fingerprint: p for p in wave_two.permission_sets}
    assert by_fp[first.fingerprint].name == "jane-legacy-name"
    assert by_fp[first.fingerprint].inline_policy == first.inline_policy
    # carol's access would be plainly "ReadOnlyAccess", a name the organization uses for
    # another access: it gets its hash instead.
    [carol] = [p for fp, p in by_fp.items() if fp != first.fingerprint]
    assert carol.name.startswith("ReadOnlyAccess-") and carol.name != "ReadOnlyAccess"
