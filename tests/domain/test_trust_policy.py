"""Every trust-policy rule fires on its violation, and the trust policies the plan writes pass."""

from __future__ import annotations

from typing import Any

import pytest

from domain.records import User
from domain.role_replacement import github_trust, plan_replacement
from domain.trust_policy import trust_problems
from domain.workloads import Confidence, Placement, Runtime

ACCOUNT = "111111111111"
VENDOR = "222222222222"
HOST = "token.actions.githubusercontent.com"


def _trust(principal: Any, condition: dict[str, Any] | None = None, **extra: Any) -> dict:
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def _github(condition: dict[str, Any]) -> dict:
    federated = {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}"}
    return _trust(federated, condition, Action="sts:AssumeRoleWithWebIdentity")


GOOD_SUB = "repo:acme/app:ref:refs/heads/main"
AUD = {f"{HOST}:aud": "sts.amazonaws.com"}


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (_trust("*"), "any principal"),
        (_trust({"AWS": "*"}), "any principal"),
        (_trust({"AWS": ["arn:aws:iam::111111111111:role/x", "*"]}), "any principal"),
        (_trust({"AWS": f"arn:aws:iam::{VENDOR}:root"}), "another account's root"),
        (_trust({"AWS": VENDOR}), "another account's root"),
        (_github({"StringEquals": {f"{HOST}:sub": GOOD_SUB}}), "aud"),
        (
            _github({"StringEquals": {f"{HOST}:aud": "other", f"{HOST}:sub": GOOD_SUB}}),
            "aud",
        ),
        (_github({"StringEquals": AUD}), "without a"),
        (_github({"StringEquals": AUD, "StringLike": {f"{HOST}:sub": "repo:acme/*"}}), "spans"),
        (_github({"StringEquals": AUD, "StringLike": {f"{HOST}:sub": "repo:*"}}), "spans"),
        (_github({"StringEquals": AUD, "StringLike": {f"{HOST}:sub": "*"}}), "spans"),
        (
            _github({"StringEquals": AUD, "StringLike": {f"{HOST}:sub": "repo:acme/ap?:*"}}),
            "spans",
        ),
    ],
)
def test_every_rule_fires(document: dict, fragment: str):
    problems = trust_problems(document, ACCOUNT)
    assert problems and any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    "document",
    [
        _trust({"Service": "lambda.amazonaws.com"}),
        _trust("*", {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}),
        _trust({"AWS": f"arn:aws:iam::{VENDOR}:root"}, {"StringEquals": {"sts:ExternalId": "x"}}),
        _trust({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}),  # the role's own account
        _github({"StringEquals": {**AUD, f"{HOST}:sub": GOOD_SUB}}),
        # One repository, any ref: pinned to one repository, acceptable.
        _github({"StringEquals": AUD, "StringLike": {f"{HOST}:sub": "repo:acme/app:*"}}),
        github_trust(ACCOUNT, "acme/app"),
        # A Deny to anyone is no grant.
        {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole"}]},
    ],
)
def test_a_good_policy_passes(document: dict):
    assert trust_problems(document, ACCOUNT) == []


def _user() -> User:
    return User(name="ci", user_id="AIDA1", arn=f"arn:aws:iam::{ACCOUNT}:user/ci")


@pytest.mark.parametrize(
    ("runtime", "extra"),
    [
        (Runtime.LAMBDA, {}),
        (Runtime.ECS, {}),
        (Runtime.EC2, {}),
        (Runtime.CODEBUILD, {}),
        (Runtime.GITHUB_ACTIONS, {"repository": "acme/app"}),
        (Runtime.TERRAFORM, {"repository": "acme/infra"}),
        (Runtime.VENDOR, {"vendor_account": VENDOR, "external_id": "ext-1"}),
        (
            Runtime.ON_PREMISES,
            {"trust_anchor_arn": f"arn:aws:rolesanywhere:us-east-1:{ACCOUNT}:trust-anchor/t"},
        ),
    ],
)
def test_every_planned_trust_policy_passes_the_checks(runtime: Runtime, extra: dict):
    placement = Placement(ACCOUNT, "ci", runtime, Confidence.HIGH, **extra)
    replacement, findings = plan_replacement(placement, _user(), {})
    assert replacement is not None and findings == []
    assert trust_problems(replacement.trust_policy, ACCOUNT) == []
    assert (replacement.instance_profile_name is not None) == (runtime == Runtime.EC2)


@pytest.mark.parametrize(
    ("runtime", "kind", "severity"),
    [
        (Runtime.GITHUB_ACTIONS, "replace-needs-repository", "warning"),
        (Runtime.TERRAFORM, "replace-needs-repository", "warning"),
        (Runtime.VENDOR, "replace-needs-vendor", "warning"),
        (Runtime.ON_PREMISES, "replace-needs-trust-anchor", "warning"),
    ],
)
def test_missing_facts_plan_no_role_and_say_why(runtime: Runtime, kind: str, severity: str):
    replacement, findings = plan_replacement(
        Placement(ACCOUNT, "ci", runtime, Confidence.HIGH), _user(), {}
    )
    assert replacement is None
    assert [(f.kind, f.severity) for f in findings] == [(kind, severity)]
    assert findings[0].details["stages"] == ["replace"]
