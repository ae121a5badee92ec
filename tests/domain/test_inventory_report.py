"""The inventory report says, for every account that fails CIS 1.21, what is left and why."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.inventory_report import inventory_rows
from domain.records import Account, AccountInventory, User, UserClass


def user(name: str, user_class: UserClass) -> User:
    return User(name=name, user_id=f"AIDA{name.upper()}", arn=f"arn:{name}", user_class=user_class)


def test_an_account_with_only_protected_users_passes_and_the_others_say_why_not():
    now = datetime(2026, 11, 28, tzinfo=UTC)
    clean = AccountInventory(Account("111111111111"), [user("breakglass", UserClass.PROTECTED)])
    left = AccountInventory(
        Account("222222222222"),
        [
            user("breakglass", UserClass.PROTECTED),
            user("ci-bot", UserClass.WORKLOAD),
            user("deploy", UserClass.WORKLOAD),
            user("jane", UserClass.HUMAN),
        ],
    )
    unread = AccountInventory(Account("333333333333"), error="unreachable: connection refused")
    rows = {r["account_id"]: r for r in inventory_rows([clean, left, unread], now)}
    assert (rows["111111111111"]["cis_1_21"], rows["111111111111"]["cis_1_21_why"]) == ("PASS", "")
    assert rows["222222222222"]["cis_1_21"] == "FAIL"
    assert rows["222222222222"]["cis_1_21_why"] == (
        "1 human user(s): migrate, then disable and delete; "
        "2 workload user(s): replace their keys with roles, then retire"
    )
    assert rows["333333333333"]["cis_1_21"] == "UNKNOWN"
    assert "not inventoried: unreachable" in rows["333333333333"]["cis_1_21_why"]
