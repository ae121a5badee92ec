"""The central-roles target outside planning: protected central users, CIS 1.21, notices."""

from __future__ import annotations

import email
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from domain.central_roles import member_role_name
from domain.central_spec import Central
from domain.cis import verdict
from domain.cis_rules import Cis
from domain.classification import CENTRAL_ACCOUNT_REASON, ClassificationRules, classify_user
from domain.errors import NotForThisTarget
from domain.inventory_report import inventory_rows
from domain.notices import (
    NoticeContext,
    central_of,
    central_sign_in_url,
    notices_from_plan,
    write_notices,
)
from domain.plan import Outcome, Plan, UserPlan
from domain.records import Account, AccountInventory, IdentityUser, User, UserClass
from domain.spec import parse_spec

NOW = datetime(2026, 11, 28, tzinfo=UTC)
C, A1, A2 = "999999999999", "111111111111", "222222222222"


def console_user(name: str, account_id: str) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper()}",
        arn=f"arn:aws:iam::{account_id}:user/{name}",
        password_enabled=True,
        password_last_used=NOW,
        created=NOW,
    )


def test_the_central_accounts_users_are_protected_and_no_other_accounts():
    rules = ClassificationRules(central_account=C)
    jane = console_user("jane", C)
    assert classify_user(jane, rules, NOW) == (UserClass.PROTECTED, CENTRAL_ACCOUNT_REASON, None)
    # The account given wins over the ARN's (records read from a snapshot carry both).
    assert classify_user(jane, rules, NOW, A1)[0] is UserClass.HUMAN
    assert classify_user(console_user("jane", A1), rules, NOW)[0] is UserClass.HUMAN
    assert classify_user(console_user("jane", A1), rules, NOW, C)[0] is UserClass.PROTECTED
    assert classify_user(jane, ClassificationRules(), NOW)[0] is UserClass.HUMAN


def test_cis_passes_the_central_account_with_its_users_and_says_why():
    people = AccountInventory(Account(C), [console_user("jane", C)])
    people.users[0].user_class = UserClass.PROTECTED
    member = AccountInventory(Account(A1), [console_user("jane.doe", A1)])
    member.users[0].user_class = UserClass.HUMAN

    found = verdict(people, Cis(), NOW, central_account=C)
    assert found.status == "PASS"
    assert "central identity account, [central] account" in found.why
    assert "1 IAM user(s)" in found.why
    # Without the target, a protected user that is no documented exception fails it.
    assert verdict(people, Cis(), NOW).status == "FAIL"
    assert verdict(member, Cis(), NOW, central_account=C).status == "FAIL"
    rows = inventory_rows([people, member], NOW, Cis(), central_account=C)
    assert [r["cis_1_21"] for r in rows] == ["PASS", "FAIL"]


def test_the_spec_refuses_identity_center_only_commands_for_central_roles():
    central = parse_spec({"name": "m", "target": "central-roles", "central": {"account": C}})
    with pytest.raises(NotForThisTarget) as caught:
        central.identity_center_only("iamc drift", "drift check")
    assert str(caught.value) == (
        "iamc drift reads Identity Center only; the central-roles target has no drift check yet"
    )
    assert caught.value.exit_code == 2
    parse_spec({"name": "m"}).identity_center_only("iamc drift", "drift check")


def central_plan(central: Central) -> Plan:
    users = [
        UserPlan(A1, "jdoe", "human", Outcome.MIGRATE, "", "f", "jane", ["Dev", "ReadOnly"]),
        UserPlan(A2, "jane.d", "human", Outcome.MIGRATE, "", "f", "jane", ["Ops"]),
        UserPlan(A1, "ci", "workload", Outcome.SKIP_WORKLOAD, "", "f"),
    ]
    settings = {"target": "central-roles", "central": central.model_dump()}
    return Plan("acme", 1, 1, settings, users, [], [], [], [], [])


def test_notices_of_central_roles_give_switch_role_links_and_config_profiles(tmp_path: Path):
    central = Central(account=C, role_prefix="acme-", max_session_hours=2)
    plan = central_plan(central)
    assert central_of(plan.settings) == central and central_of({}) is None
    identities = [IdentityUser(f"arn:aws:iam::{C}:user/jane", "jane", "jane", ["j@acme.example"])]
    notices = notices_from_plan(plan, identities, {A1: "prod"})
    ctx = NoticeContext(
        "acme",
        central_sign_in_url(central, None),
        date(2026, 3, 2),
        date(2026, 3, 16),
        "iam@acme.example",
        central=central,
        region="eu-west-1",
    )
    rows = write_notices(notices, ctx, tmp_path, date(2026, 2, 23))

    text = (tmp_path / "jane.md").read_text()
    assert f"https://{C}.signin.aws.amazon.com/console" in text
    assert "Identity Center" not in text and "awsapps.com" not in text
    assert member_role_name(central, "Dev") == "acme-Dev"
    for account_id, access in ((A1, "Dev"), (A1, "ReadOnly"), (A2, "Ops")):
        assert (
            "https://signin.aws.amazon.com/switchrole?"
            f"roleName=iamc%2Facme-{access}&account={account_id}" in text
        )
        assert (
            f"[profile {account_id}-{access}]\n"
            f"role_arn = arn:aws:iam::{account_id}:role/iamc/acme-{access}\n"
            "source_profile = central\n"
            f"mfa_serial = arn:aws:iam::{C}:mfa/jane\n"
            "duration_seconds = 7200\n"
            "region = eu-west-1\n"
        ) in text
    assert "displayName=Dev+%40+prod" in text
    assert rows[0]["accounts"] == f"{A1} (prod): acme-Dev, acme-ReadOnly; {A2}: acme-Ops"
    message = email.message_from_bytes((tmp_path / "jane.eml").read_bytes())
    subject = " ".join(message["Subject"].split())  # a long header is folded
    assert f"moves to roles you switch into from account {C}: old IAM users" in subject


def test_people_arriving_through_one_federated_role_are_each_told(tmp_path: Path):
    central = Central(account=C, arrive="saml-roles")
    role = IdentityUser(
        f"arn:aws:iam::{C}:role/engineers", "jane", "engineers", ["a@x.io", "b@x.io"]
    )
    notices = notices_from_plan(central_plan(central), [role], {})
    ctx = NoticeContext(
        "acme",
        central_sign_in_url(central, None),
        date(2026, 3, 2),
        date(2026, 3, 16),
        "iam@x.io",
        central=central,
    )
    write_notices(notices, ctx, tmp_path, date(2026, 2, 23))
    text = (tmp_path / "jane.md").read_text()
    # No MFA device: the IdP's sign-in is the second factor; the profile comes from its tool.
    assert "mfa_serial" not in text and "single sign-on" in text
    assert "role_arn = arn:aws:iam::111111111111:role/iamc/iamc-Dev\n" in text
    message = email.message_from_bytes((tmp_path / "jane.eml").read_bytes())
    assert message["To"] == "engineers <a@x.io>, b@x.io"


def test_a_federated_persons_profiles_ask_for_no_more_than_role_chaining_allows(
    tmp_path: Path,
):
    # Switching from a federated role's session is role chaining: STS caps it at one hour,
    # whatever the member role's maximum; IAM users switching in get the role's maximum.
    for arrive, expected in (("saml-roles", 3600), ("iam-users", 4 * 3600)):
        central = Central(account=C, arrive=arrive, max_session_hours=4)
        name = "engineers" if arrive == "saml-roles" else "jane"
        person = IdentityUser(f"arn:aws:iam::{C}:role/{name}", "jane", name, ["a@x.io"])
        [notice] = notices_from_plan(central_plan(central), [person], {})
        ctx = NoticeContext(
            "acme", "", date(2026, 3, 2), date(2026, 3, 16), "iam@x.io", central=central
        )
        out = tmp_path / arrive
        write_notices([notice], ctx, out, date(2026, 2, 23))
        text = (out / "jane.md").read_text()
        durations = {line for line in text.splitlines() if line.startswith("duration_seconds")}
        assert durations == {f"duration_seconds = {expected}"}, arrive
