"""The central-roles member role's trust lint: every rule fires, the planned trust passes."""

from __future__ import annotations

from typing import Any

import pytest

from domain.central_roles import trust_policy
from domain.central_spec import Central
from domain.trust_policy import central_trust_problems, trust_problems

CENTRAL = "999999999999"
MEMBER = "111111111111"
VENDOR = "222222222222"
ALICE = f"arn:aws:iam::{CENTRAL}:user/alice"
MFA = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}


def _trust(principal: Any, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def _problems(document: dict[str, Any], people_are_users: bool = True) -> list[str]:
    return central_trust_problems(
        document, role_account=MEMBER, central_account=CENTRAL, people_are_users=people_are_users
    )


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (_trust("*"), "any principal"),
        (_trust({"AWS": "*"}, MFA), "any principal"),
        # "*" is refused even with a narrowing condition that trust_problems accepts.
        (_trust({"AWS": "*"}, {"StringEquals": {"aws:PrincipalOrgID": "o-1"}}), "any principal"),
        (_trust({"AWS": f"arn:aws:iam::{CENTRAL}:root"}, MFA), "the central account's root"),
        (_trust({"AWS": CENTRAL}, MFA), "the central account's root"),
        (_trust({"AWS": f"arn:aws:iam::{MEMBER}:root"}), "its own account's root"),
        (
            _trust(
                {"AWS": f"arn:aws:iam::{VENDOR}:root"}, {"StringEquals": {"sts:ExternalId": "x"}}
            ),
            "another account's root",
        ),
        (_trust({"AWS": f"arn:aws:iam::{VENDOR}:role/deployer"}), "without sts:ExternalId"),
        (_trust({"AWS": ALICE}), "MultiFactorAuthPresent"),
        # BoolIfExists lets credentials without MFA through: not enough.
        (
            _trust({"AWS": ALICE}, {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}),
            "MultiFactorAuthPresent",
        ),
        (_trust({"AWS": ALICE}, {"Bool": {"aws:MultiFactorAuthPresent": "false"}}), "MultiFactor"),
        (
            _trust({"Federated": f"arn:aws:iam::{MEMBER}:saml-provider/okta"}),
            "federated principal",
        ),
        (_trust({"Service": "ec2.amazonaws.com"}), "the service ec2.amazonaws.com"),
        (
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "NotPrincipal": {"AWS": ALICE}, "Action": "sts:AssumeRole"}
                ],
            },
            "NotPrincipal",
        ),
    ],
)
def test_each_rule_fires_on_its_violation(document: dict[str, Any], fragment: str):
    problems = _problems(document)
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    "document",
    [
        _trust({"AWS": [ALICE, f"arn:aws:iam::{CENTRAL}:user/bob"]}, MFA),
        # The central account's root narrowed to named principals, or to a tagged one.
        _trust(
            {"AWS": f"arn:aws:iam::{CENTRAL}:root"},
            {**MFA, "ArnEquals": {"aws:PrincipalArn": ALICE}},
        ),
        _trust(
            {"AWS": f"arn:aws:iam::{CENTRAL}:root"},
            {"Bool": MFA["Bool"], "StringEquals": {"aws:PrincipalTag/access": "dev"}},
        ),
        # A third party's role with an ExternalId; the role's own account's role.
        _trust({"AWS": f"arn:aws:iam::{VENDOR}:role/x"}, {"StringEquals": {"sts:ExternalId": "x"}}),
        _trust({"AWS": f"arn:aws:iam::{MEMBER}:role/ops"}),
        # A Deny names anyone without granting anything.
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}],
        },
    ],
)
def test_trust_naming_exactly_who_passes(document: dict[str, Any]):
    assert _problems(document) == []


def test_federated_roles_arrive_without_mfa_and_pass():
    federated = f"arn:aws:iam::{CENTRAL}:role/okta-dev"
    assert _problems(_trust({"AWS": federated}), people_are_users=False) == []
    # People as users without MFA are refused only when people arrive as users.
    assert _problems(_trust({"AWS": ALICE}), people_are_users=False) == []


@pytest.mark.parametrize("arrive", ["iam-users", "saml-roles"])
def test_the_planned_trust_policy_passes(arrive: str):
    central = Central(account=CENTRAL, arrive=arrive)  # type: ignore[arg-type]
    principal = ALICE if arrive == "iam-users" else f"arn:aws:iam::{CENTRAL}:role/okta-dev"
    document = trust_policy([principal], central)
    assert (
        central_trust_problems(
            document,
            role_account=MEMBER,
            central_account=CENTRAL,
            people_are_users=arrive == "iam-users",
        )
        == []
    )
    # Without the MFA condition the same trust fails for people as users.
    if arrive == "iam-users":
        document["Statement"][0].pop("Condition")
        assert _problems(document)


def test_workload_trust_rules_keep_their_behaviour():
    # trust_problems accepts a narrowed "*" and its own root: unchanged by the central lint.
    narrowed = _trust({"AWS": "*"}, {"StringEquals": {"aws:PrincipalOrgID": "o-1"}})
    assert trust_problems(narrowed, MEMBER) == []
    assert trust_problems(_trust({"AWS": f"arn:aws:iam::{MEMBER}:root"}), MEMBER) == []
