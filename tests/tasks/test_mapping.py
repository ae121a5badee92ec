"""Identity mapping rules, ambiguity, group mapping and the overrides CSV's precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import InputFileError, SpecError
from domain.mapping import IdentityIndex, map_identities, map_user, parse_user_rules
from domain.mapping_overrides import GROUP_OVERRIDE_HEADER, check_overrides, parse_overrides
from domain.records import (
    Account,
    AccountInventory,
    Group,
    IdentityGroup,
    IdentityUser,
    MatchStatus,
    User,
    UserClass,
)
from domain.spec import load_spec

A, B = "111111111111", "222222222222"

IDENTITIES = [
    IdentityUser("u-jane", "jane.doe@example.com", "Jane Doe", ["jane.doe@example.com"]),
    IdentityUser("u-john", "john.smith@example.com", "John Smith", ["john.smith@example.com"]),
    IdentityUser("u-alex1", "alex.kim@example.com", "Alex Kim", ["alex.kim@example.com"]),
    IdentityUser(
        "u-alex2",
        "alex.kim@contractors.example.com",
        "Alex Kim",
        ["alex.kim@contractors.example.com"],
    ),
    IdentityUser("u-ops", "ops", "Ops Person", ["operations@corp.example.com"]),
]


def human(name: str, tags: dict[str, str] | None = None, groups: list[str] | None = None) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper()}",
        arn=f"arn:aws:iam::{A}:user/{name}",
        tags=tags or {},
        groups=groups or [],
        user_class=UserClass.HUMAN,
    )


def account(account_id: str, users: list[User], groups: list[str] = ()) -> AccountInventory:
    return AccountInventory(
        account=Account(account_id),
        users=users,
        groups=[Group(g, f"AGPA{g}", f"arn:aws:iam::{account_id}:group/{g}") for g in groups],
    )


def one(user: User, rules: list[str], overrides=None, account_id: str = A):
    return map_user(account_id, user, parse_user_rules(rules), IdentityIndex(IDENTITIES), overrides)


def write(tmp_path: Path, text: str, name: str = "overrides.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- user rules ---------------------------------------------------------------------------------


def test_tag_rule_compares_the_tag_value_case_insensitively_to_user_names_and_emails():
    result = one(human("jdoe", {"email": "Jane.Doe@Example.COM"}), ["tag:email", "username"])
    assert result.status == MatchStatus.MATCHED and result.rule == "tag:email"
    assert result.identity_user_id == "u-jane"
    assert result.identity_user_name == "jane.doe@example.com"
    # An email that is not the user name matches too.
    result = one(human("x", {"mail": "operations@corp.example.com"}), ["tag:mail"])
    assert (result.status, result.identity_user_id) == (MatchStatus.MATCHED, "u-ops")


def test_username_rule_is_exact_but_case_insensitive():
    assert one(human("OPS"), ["username"]).identity_user_id == "u-ops"
    # jane.doe is not the user name jane.doe@example.com: username alone does not match.
    assert one(human("jane.doe"), ["username"]).status == MatchStatus.UNMATCHED


def test_template_rule_substitutes_the_iam_user_name():
    result = one(human("john.smith"), ["username@example.com"])
    assert result.status == MatchStatus.MATCHED and result.rule == "username@example.com"
    assert result.identity_user_id == "u-john"
    assert one(human("john.smith"), ["username@other.example"]).status == MatchStatus.UNMATCHED


def test_email_localpart_matches_one_identity():
    result = one(human("jane.doe"), ["email-localpart"])
    assert (result.status, result.rule, result.identity_user_id) == (
        MatchStatus.MATCHED,
        "email-localpart",
        "u-jane",
    )


def test_two_candidates_are_ambiguous_and_never_guessed():
    result = one(human("alex.kim"), ["tag:email", "username", "email-localpart"])
    assert result.status == MatchStatus.AMBIGUOUS
    assert result.rule == "email-localpart"
    assert result.identity_user_id is None
    assert result.candidates == ["alex.kim@contractors.example.com", "alex.kim@example.com"]
    assert "not guessed" in result.reason


def test_the_first_rule_with_candidates_decides_even_when_a_later_rule_is_unique():
    # The tag finds two identities; the template would find one, but is never tried.
    identities = [
        IdentityUser("u-1", "sam@example.com", emails=["sam@example.com"]),
        IdentityUser("u-2", "sam.lee", emails=["sam@example.com"]),
    ]
    index = IdentityIndex(identities)
    rules = parse_user_rules(["tag:email", "username"])
    result = map_user(A, human("sam.lee", {"email": "sam@example.com"}), rules, index)
    assert result.status == MatchStatus.AMBIGUOUS and result.rule == "tag:email"
    # Order matters: username first matches uniquely.
    rules = parse_user_rules(["username", "tag:email"])
    result = map_user(A, human("sam.lee", {"email": "sam@example.com"}), rules, index)
    assert (result.status, result.identity_user_id) == (MatchStatus.MATCHED, "u-2")


def test_unmatched_names_the_rules_tried_and_the_tag_it_read():
    result = one(
        human("victor.stone", {"email": "victor.stone@example.com"}),
        ["override", "tag:email", "username", "email-localpart"],
    )
    assert result.status == MatchStatus.UNMATCHED and result.rule is None
    assert "override, tag:email, username, email-localpart" in result.reason
    assert "victor.stone@example.com" in result.reason
    untagged = one(human("nobody"), ["tag:email"])
    assert "no 'email' tag" in untagged.reason


def test_override_comes_first_and_an_account_row_beats_the_star_row(tmp_path):
    overrides = parse_overrides(
        write(
            tmp_path,
            "account_id,iam_user,idp_user\n"
            f"*,alex.kim,alex.kim@example.com\n"
            f"{B},alex.kim,alex.kim@contractors.example.com\n",
        )
    )
    rules = ["override", "email-localpart"]
    in_a = one(human("alex.kim"), rules, overrides, A)
    in_b = one(human("alex.kim"), rules, overrides, B)
    assert (in_a.status, in_a.rule, in_a.identity_user_id) == (
        MatchStatus.MATCHED,
        "override",
        "u-alex1",
    )
    assert in_b.identity_user_id == "u-alex2"
    assert "overrides.csv:3" in in_b.reason
    # Without the override rule in the rules, the CSV is not consulted.
    assert one(human("alex.kim"), ["email-localpart"], overrides).status == MatchStatus.AMBIGUOUS


def test_unknown_rule_kind_is_a_spec_error_naming_mapping_rules(tmp_path):
    with pytest.raises(SpecError, match=r"mapping\.rules: unknown rule 'fuzzy'"):
        parse_user_rules(["override", "fuzzy"])
    spec = tmp_path / "spec.toml"
    spec.write_text('name = "w"\n[mapping]\nrules = ["tag:email", "display-name"]\n')
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert [key for key, _ in caught.value.problems] == ["mapping.rules"]
    assert "display-name" in str(caught.value)
    spec.write_text('name = "w"\n[mapping]\ngroup_rules = ["name", "members"]\n')
    with pytest.raises(SpecError, match=r"mapping\.group_rules: unknown rule 'members'"):
        load_spec(spec)


def test_spec_mapping_defaults_and_override_paths_relative_to_the_spec(tmp_path):
    spec = tmp_path / "conf" / "spec.toml"
    spec.parent.mkdir()
    spec.write_text('name = "w"\n[mapping]\noverrides = "people.csv"\n')
    mapping = load_spec(spec).mapping
    assert mapping.rules == ["override", "tag:email", "username", "email-localpart"]
    assert mapping.group_rules == ["override", "name"]
    assert mapping.overrides == str((tmp_path / "conf" / "people.csv").resolve())
    assert mapping.group_overrides is None


# -- the organization -----------------------------------------------------------------------


def test_same_person_in_several_accounts_maps_to_one_identity_and_workloads_get_findings():
    jane_a = human("jane.doe", {"email": "jane.doe@example.com"})
    jane_b = human("jdoe", {"email": "JANE.DOE@example.com"})
    deployer = User("ci-deployer", "AIDACI", "arn", user_class=UserClass.WORKLOAD)
    breakglass = User("breakglass-admin", "AIDABG", "arn", user_class=UserClass.PROTECTED)
    stale = User("old.timer", "AIDAOLD", "arn", user_class=UserClass.UNUSED)
    result = map_identities(
        [account(A, [jane_a, deployer, breakglass, stale]), account(B, [jane_b])],
        IDENTITIES,
        [],
        ["tag:email", "username"],
    )
    assert [(m.account_id, m.iam_user, m.identity_user_id) for m in result.users] == [
        (A, "jane.doe", "u-jane"),
        (B, "jdoe", "u-jane"),
    ]
    workload = [f for f in result.findings if f.kind == "workload-needs-role"]
    assert len(workload) == 1
    assert workload[0].severity == "warning" and workload[0].subject == "ci-deployer"
    assert workload[0].account_id == A and "needs an IAM role, not a person" in workload[0].message
    summary = result.summary()
    assert summary["matched"] == 2 and summary["identities"] == 1
    assert summary["identities_in_several_accounts"] == 1
    assert summary["workload_users"] == 1 and summary["by_rule"] == {"tag:email": 2}


def test_one_iam_name_mapping_to_different_identities_is_flagged():
    result = map_identities(
        [
            account(A, [human("admin", {"email": "jane.doe@example.com"})]),
            account(B, [human("admin", {"email": "john.smith@example.com"})]),
        ],
        IDENTITIES,
        [],
        ["tag:email"],
    )
    kinds = {f.kind for f in result.findings}
    assert "iam-name-maps-to-several-identities" in kinds


def _group_org(jane_groups, john_groups, extra_users=()):
    return [
        account(
            A,
            [
                human("jane.doe", {"email": "jane.doe@example.com"}, jane_groups),
                human("john.smith", {"email": "john.smith@example.com"}, john_groups),
                *extra_users,
            ],
            ["developers", "platform-admins", "empty", "contractors"],
        )
    ]


def test_group_maps_by_name_when_the_idp_group_holds_every_mapped_member():
    groups = [
        IdentityGroup("g-dev", "developers", ["u-jane", "u-john", "u-ops"]),
        IdentityGroup("g-admins", "Platform-Admins", ["u-jane"]),
    ]
    victor = human("victor.stone", {"email": "victor.stone@example.com"}, ["developers"])
    result = map_identities(
        _group_org(["developers", "platform-admins"], ["developers", "platform-admins"], [victor]),
        IDENTITIES,
        groups,
        ["tag:email"],
    )
    by_name = {g.iam_group: g for g in result.groups}
    dev = by_name["developers"]
    assert (dev.status, dev.rule, dev.identity_group_id) == (MatchStatus.MATCHED, "name", "g-dev")
    assert "1 members not mapped yet" in dev.reason  # victor: unmatched, not counted
    admins = by_name["platform-admins"]
    assert admins.status == MatchStatus.UNMATCHED and admins.rule == "name"
    assert "john.smith (john.smith@example.com)" in admins.reason
    assert "jane.doe" not in admins.reason
    assert by_name["empty"].status == MatchStatus.UNMATCHED
    assert "no member of the IAM group is mapped" in by_name["empty"].reason
    assert by_name["contractors"].reason.startswith("no member")


def test_group_without_an_idp_group_of_that_name_is_unmatched_and_an_override_maps_it(tmp_path):
    groups = [IdentityGroup("g-eng", "engineering", ["u-jane", "u-john"])]
    org = _group_org(["developers"], ["developers"])
    plain = map_identities(org, IDENTITIES, groups, ["tag:email"])
    dev = next(g for g in plain.groups if g.iam_group == "developers")
    assert (
        dev.status == MatchStatus.UNMATCHED and "no IdP group found by override, name" in dev.reason
    )

    overrides = parse_overrides(
        write(tmp_path, f"account_id,iam_group,idp_group\n{A},developers,Engineering\n"),
        GROUP_OVERRIDE_HEADER,
    )
    check_overrides(None, overrides, IDENTITIES, groups)
    mapped = map_identities(org, IDENTITIES, groups, ["tag:email"], group_overrides=overrides)
    dev = next(g for g in mapped.groups if g.iam_group == "developers")
    assert (dev.status, dev.rule, dev.identity_group_name) == (
        MatchStatus.MATCHED,
        "override",
        "engineering",
    )


def test_two_idp_groups_with_the_name_are_ambiguous():
    groups = [
        IdentityGroup("g-1", "developers", ["u-jane", "u-john"]),
        IdentityGroup("g-2", "Developers", ["u-jane", "u-john"]),
    ]
    result = map_identities(_group_org(["developers"], []), IDENTITIES, groups, ["tag:email"])
    dev = next(g for g in result.groups if g.iam_group == "developers")
    assert dev.status == MatchStatus.AMBIGUOUS and "g-1, g-2" in dev.reason


def test_an_override_that_applies_to_nobody_is_a_finding(tmp_path):
    overrides = parse_overrides(
        write(tmp_path, f"account_id,iam_user,idp_user\n{B},ghost,jane.doe@example.com\n")
    )
    result = map_identities(
        [account(A, [human("jane.doe")])],
        IDENTITIES,
        [],
        ["override", "email-localpart"],
        [],
        overrides,
    )
    unused = [f for f in result.findings if f.kind == "override-unused"]
    assert len(unused) == 1 and "overrides.csv:2" in unused[0].message


# -- the overrides CSV ----------------------------------------------------------------------


def test_overrides_csv_accepts_star_comments_blank_lines_bom_and_spaces(tmp_path):
    path = write(
        tmp_path,
        "\ufeff# maintained by the IAM admins\naccount_id,iam_user,idp_user\n\n"
        f"*, alex.kim ,alex.kim@example.com\n# a comment\n{A},root-ish,ops\n",
    )
    overrides = parse_overrides(path)
    assert overrides.lookup(B, "ALEX.KIM").line == 4
    assert overrides.lookup(A, "root-ish").idp_name == "ops"
    check_overrides(overrides, None, IDENTITIES, [])


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("account,iam_user,idp_user\n", 1, "account_id", "header must be exactly"),
        ("account_id,iam_user\n", 1, "idp_user", "'account_id,iam_user,idp_user'"),
        ("account_id,idp_user,iam_user\n", 1, "iam_user", "header must be exactly"),
        (f"account_id,iam_user,idp_user\n{A},a,b\n{A},c\n", 3, None, "expected 3 columns"),
        (f"account_id,iam_user,idp_user\n{A},a,b,c\n", 2, None, "got 4"),
        ("account_id,iam_user,idp_user\n12345,a,b\n", 2, "account_id", "12-digit account id"),
        ("account_id,iam_user,idp_user\n11111111111,a,b\n", 2, "account_id", "leading zeros"),
        ("account_id,iam_user,idp_user\nall,a,b\n", 2, "account_id", "or '*'"),
        (f"account_id,iam_user,idp_user\n{A},,b\n", 2, "iam_user", "is empty"),
        (f"account_id,iam_user,idp_user\n{A},a,\n", 2, "idp_user", "is empty"),
        (f"account_id,iam_user,idp_user\n{A},a b,x\n", 2, "iam_user", "not an IAM name"),
        (
            f"account_id,iam_user,idp_user\n{A},jane,x\n*,jane,y\n\n{A},JANE,z\n",
            5,
            "iam_user",
            "already mapped on line 2",
        ),
        ('account_id,iam_user,idp_user\n*,"a,b\n', 2, None, "not valid CSV"),
        ("", 1, None, "empty file"),
        ("# only a comment\n", 1, None, "empty file"),
    ],
)
def test_bad_overrides_csv_names_the_line_and_column(tmp_path, text, line, field, message):
    path = write(tmp_path, text)
    with pytest.raises(InputFileError) as caught:
        parse_overrides(path)
    err = caught.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert message in str(err)
    assert str(err).startswith(f"{path}:{line}")
    if field:
        assert f"(field {field!r})" in str(err)


def test_an_idp_user_missing_from_the_identity_store_names_its_line(tmp_path):
    path = write(
        tmp_path,
        f"account_id,iam_user,idp_user\n{A},jane,jane.doe@example.com\n{A},bob,bob@example.com\n",
    )
    overrides = parse_overrides(path)
    with pytest.raises(InputFileError) as caught:
        check_overrides(overrides, None, IDENTITIES, [])
    assert (caught.value.line, caught.value.field) == (3, "idp_user")
    assert "no identity-store user 'bob@example.com'" in str(caught.value)
    # A user id is accepted as well as a user name.
    path.write_text(f"account_id,iam_user,idp_user\n{A},jane,u-jane\n")
    check_overrides(parse_overrides(path), None, IDENTITIES, [])


def test_group_overrides_use_their_own_header_and_name_an_unknown_group(tmp_path):
    path = write(tmp_path, "account_id,iam_user,idp_user\n", "groups.csv")
    with pytest.raises(InputFileError, match="account_id,iam_group,idp_group"):
        parse_overrides(path, GROUP_OVERRIDE_HEADER)
    path.write_text(f"account_id,iam_group,idp_group\n{A},developers,devs\n")
    with pytest.raises(InputFileError) as caught:
        check_overrides(None, parse_overrides(path, GROUP_OVERRIDE_HEADER), IDENTITIES, [])
    assert (caught.value.line, caught.value.field) == (2, "idp_group")


def test_missing_or_undecodable_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        parse_overrides(tmp_path / "nope.csv")
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"account_id,iam_user,idp_user\n*,jos\xe9,x\n")
    with pytest.raises(InputFileError, match="not UTF-8"):
        parse_overrides(path)
