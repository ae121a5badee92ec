"""The inventory report gives CIS 1.21 as the benchmark states it, and says why per account."""

from __future__ import annotations

from datetime import UTC, date, datetime

from domain.cis_rules import Cis, CisException, ServiceUser
from domain.inventory_report import inventory_rows
from domain.records import (
    AccessKey,
    Account,
    AccountInventory,
    InlinePolicy,
    User,
    UserClass,
)
from domain.workloads import Confidence, KeyUsage, Placement, Runtime

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def user(name: str, user_class: UserClass, *, password: bool = False, keys: int = 0) -> User:
    return User(
        name=name,
        user_id=f"AIDA{name.upper()}",
        arn=f"arn:{name}",
        user_class=user_class,
        password_enabled=password,
        access_keys=[AccessKey(f"AKIA{name.upper()}{n}", "Active") for n in range(keys)],
    )


def quarantined(found: User) -> User:
    found.inline_policies.append(InlinePolicy("iamc-quarantine", {"Statement": []}))
    return found


def account(account_id: str, *users: User, error: str | None = None) -> AccountInventory:
    return AccountInventory(Account(account_id), list(users), error=error)


RULES = Cis(
    identity_accounts=["999999999999"],
    service_users=[
        ServiceUser(account="222222222222", user="ci-bot", owner="platform-team"),
        ServiceUser(account="444444444444", user="console-bot", owner="data-team"),
    ],
    exceptions=[
        CisException(
            account="222222222222",
            user="breakglass",
            owner="secops",
            reason="break-glass for an IdP outage",
            expires=date(2027, 6, 30),
        ),
        CisException(
            account="555555555555",
            user="breakglass",
            owner="secops",
            reason="break-glass",
            expires=date(2026, 1, 1),
        ),
    ],
)


def test_the_verdict_table_of_cis_1_21():
    rows = {
        r["account_id"]: r
        for r in inventory_rows(
            [
                # no IAM user at all
                account("111111111111"),
                # a declared service with keys and a documented break-glass exception
                account(
                    "222222222222",
                    user("ci-bot", UserClass.WORKLOAD, keys=2),
                    user("breakglass", UserClass.PROTECTED, password=True, keys=1),
                ),
                # a human, an unused user and a workload nobody vouched for
                account(
                    "333333333333",
                    user("jane", UserClass.HUMAN, password=True),
                    quarantined(user("old", UserClass.UNUSED)),
                    user("deploy", UserClass.WORKLOAD, keys=1),
                ),
                # a "service" with a console password is not one
                account("444444444444", user("console-bot", UserClass.HUMAN, password=True)),
                # an expired exception, and a protected user nobody documented
                account(
                    "555555555555",
                    user("breakglass", UserClass.PROTECTED, password=True),
                    user("breakglass-2", UserClass.PROTECTED, password=True),
                ),
                # the account providing centralized IAM user management
                account("999999999999", user("alice", UserClass.HUMAN, password=True)),
                account("666666666666", error="unreachable: connection refused"),
            ],
            NOW,
            RULES,
        )
    }
    verdicts = {a: r["cis_1_21"] for a, r in rows.items()}
    assert verdicts == {
        "111111111111": "PASS",
        "222222222222": "PASS (exceptions)",
        "333333333333": "FAIL",
        "444444444444": "FAIL",
        "555555555555": "FAIL",
        "999999999999": "PASS",
        "666666666666": "UNKNOWN",
    }
    assert rows["111111111111"]["cis_1_21_why"] == "no non-service IAM user"
    two = rows["222222222222"]
    assert (
        "break-glass for an IdP outage (owner secops, until 2027-06-30; 1 active access key(s))"
        in two["cis_1_21_exceptions"]
    )
    assert (
        "ci-bot: service, declared by platform-team; no console password"
        in two["cis_1_21_evidence"]
    )
    # Beside the verdict, never in it: the service user's long-lived keys (the exception's key
    # is named in the exception, which documents it).
    assert two["long_lived_keys"] == 2
    three = rows["333333333333"]["cis_1_21_why"]
    assert "1 human user(s) (jane)" in three
    # Disabled by iamc, its delete refused (a forgotten script used it during the bake).
    assert "1 unused user(s) not shown to be services (old, disabled, not deleted)" in three
    assert "1 workload user(s) not shown to be services" in three
    assert (
        "with a console password, not services: console-bot" in rows["444444444444"]["cis_1_21_why"]
    )
    five = rows["555555555555"]["cis_1_21_why"]
    assert "expired exception(s): breakglass (owner secops, expired 2026-01-01)" in five
    assert "1 protected user(s) not documented as exceptions" in five
    assert "centralized IAM user management" in rows["999999999999"]["cis_1_21_why"]
    assert "not inventoried: unreachable" in rows["666666666666"]["cis_1_21_why"]


def test_without_rules_only_an_account_without_iam_users_passes():
    """Protected users alone no longer pass: the benchmark asks for documented exceptions."""
    rows = inventory_rows(
        [account("111111111111", user("breakglass", UserClass.PROTECTED, password=True))], NOW
    )
    assert rows[0]["cis_1_21"] == "FAIL"
    assert "not documented as exceptions" in rows[0]["cis_1_21_why"]


def test_the_console_shows_the_why_with_its_toml_names_intact():
    """The reason names ``[[cis.service_users]]``: rich must not take it for markup."""
    from rich.console import Console

    from iamc.views.inventory import print_inventory_table

    rows = inventory_rows([account("333333333333", user("deploy", UserClass.WORKLOAD))], NOW)
    console = Console(record=True, width=300)
    print_inventory_table(console, rows, "inventory")
    assert "declare them in [[cis.service_users]]" in console.export_text()


def test_the_verdicts_as_security_hub_findings_keep_their_id_and_status():
    from domain.cis_asff import asff_findings

    rows = inventory_rows(
        [
            account("111111111111"),
            account("333333333333", user("jane", UserClass.HUMAN, password=True)),
            account("666666666666", error="unreachable"),
        ],
        NOW,
        RULES,
    )
    found = {
        f["AwsAccountId"]: f
        for f in asff_findings(rows, product_account="123456789012", region="eu-west-1", now=NOW)
    }
    assert {a: f["Compliance"]["Status"] for a, f in found.items()} == {
        "111111111111": "PASSED",
        "333333333333": "FAILED",
        "666666666666": "NOT_AVAILABLE",
    }
    fail = found["333333333333"]
    # The same account's finding keeps its id: a re-import updates it.
    assert fail["Id"].endswith("/333333333333") and fail["Severity"]["Label"] == "MEDIUM"
    assert fail["ProductArn"] == (
        "arn:aws:securityhub:eu-west-1:123456789012:product/123456789012/default"
    )
    assert fail["Description"].startswith("FAIL: 1 human user(s)")
    assert fail["Resources"][0]["Id"] == "AWS::::Account:333333333333"
    assert fail["ProductFields"]["iamc/long_lived_keys"] == "0"


def _placement(account_id: str, name: str, agents: list[str], events: int):
    return Placement(
        account_id,
        name,
        Runtime.LAMBDA,
        Confidence.HIGH,
        keys=[KeyUsage(f"AKIA{name.upper()}0", "Active", events=events, user_agents=agents)],
        non_interactive=all("console" not in a for a in agents) and events > 0,
    )


LAMBDA_AGENT = "Boto3/1.34.84 ua/2.0 exec-env/AWS_Lambda_python3.12 Botocore/1.34.84"


def test_a_workload_whose_keys_only_non_interactive_clients_used_is_a_service():
    inventory = account("333333333333", user("report-gen", UserClass.WORKLOAD, keys=1))
    placements = {
        ("333333333333", "report-gen"): _placement("333333333333", "report-gen", [LAMBDA_AGENT], 14)
    }
    row = inventory_rows([inventory], NOW, RULES, placements)[0]
    assert row["cis_1_21"] == "PASS", row["cis_1_21_why"]
    assert row["cis_1_21_evidence"] == (
        "report-gen: service: keys used only by non-interactive clients "
        "(exec-env/AWS_Lambda_python3.12, 14 calls); 1 active access key(s)"
    )
    assert row["long_lived_keys"] == 1
    # Why the key is still there: its runtime is placed, its move is pending.
    assert row["long_lived_keys_why"].startswith(
        "report-gen: 1 key(s); runs in lambda: the replace"
    )
    # One nobody could place says so, and what its owner does about it.
    unplaced = _placement("333333333333", "report-gen", ["Boto3/1.34.0 md/Botocore#1.34.0"], 12)
    unplaced.runtime, unplaced.confidence = Runtime.UNKNOWN, Confidence.LOW
    why = inventory_rows([inventory], NOW, RULES, {unplaced.key: unplaced})[0]
    assert "could not be placed (unknown, low confidence)" in why["long_lived_keys_why"]
    assert "[[workloads]]" in why["long_lived_keys_why"]
    # Without the placements the same user is not shown to be a service.
    assert inventory_rows([inventory], NOW, RULES)[0]["cis_1_21"] == "FAIL"


def test_interactive_use_or_a_console_password_is_not_service_evidence():
    mixed = account("333333333333", user("ops-tool", UserClass.WORKLOAD, keys=1))
    placements = {
        ("333333333333", "ops-tool"): _placement(
            "333333333333", "ops-tool", [LAMBDA_AGENT, "console.amazonaws.com"], 5
        ),
        ("444444444444", "bot"): _placement("444444444444", "bot", [LAMBDA_AGENT], 3),
        ("555555555555", "idle"): _placement("555555555555", "idle", [], 0),
    }
    rows = inventory_rows(
        [
            mixed,
            account("444444444444", user("bot", UserClass.WORKLOAD, password=True, keys=1)),
            account("555555555555", user("idle", UserClass.WORKLOAD, keys=1)),
        ],
        NOW,
        Cis(),
        placements,
    )
    assert [r["cis_1_21"] for r in rows] == ["FAIL", "FAIL", "FAIL"]
    assert all(r["long_lived_keys"] == 0 for r in rows)
