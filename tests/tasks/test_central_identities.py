"""The central account's principals read as identities (central-roles target), against moto."""

from __future__ import annotations

import json

import boto3

from domain.central_spec import Central
from tasks.central_identities import is_saml_federated, read_central_identities

SAML = "arn:aws:iam::123456789012:saml-provider/okta"


def _trust(principal: dict) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def test_iam_users_are_identities_by_arn_name_and_email_tags(aws):
    session = boto3.Session(region_name="us-east-1")
    iam = session.client("iam")
    iam.create_user(
        UserName="jane.doe", Path="/people/", Tags=[{"Key": "email", "Value": "j@x.io"}]
    )
    iam.create_user(UserName="Bob", Tags=[{"Key": "Email", "Value": "bob@x.io"}])
    iam.create_user(UserName="carol", Tags=[{"Key": "mail", "Value": "carol@x.io"}])
    iam.create_user(UserName="dave")
    account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]

    # One user a page: every page is read.
    found = read_central_identities(
        session, Central(account=account, people_tag="mail"), page_size=1
    )

    assert found.identity_store_id == account and found.groups == []
    assert [(u.user_name, u.emails) for u in found.users] == [
        ("Bob", ["bob@x.io"]),
        ("carol", ["carol@x.io"]),
        ("dave", []),
        ("jane.doe", ["j@x.io"]),
    ]
    jane = found.users[-1]
    assert jane.user_id == f"arn:aws:iam::{account}:user/people/jane.doe"


def test_saml_roles_are_the_roles_a_saml_provider_federates_into(aws):
    session = boto3.Session(region_name="us-east-1")
    iam = session.client("iam")
    account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
    iam.create_role(
        RoleName="engineers",
        Path="/sso/",
        AssumeRolePolicyDocument=_trust({"Federated": SAML}),
        Tags=[{"Key": "email", "Value": "a@x.io, b@x.io c@x.io"}],
    )
    iam.create_role(
        RoleName="admins",
        AssumeRolePolicyDocument=_trust({"Federated": [SAML]}),
        Tags=[{"Key": "email", "Value": "root@x.io"}],
    )
    iam.create_role(RoleName="lambda", AssumeRolePolicyDocument=_trust({"Service": "x"}))
    iam.create_role(
        RoleName="web-identity",
        AssumeRolePolicyDocument=_trust(
            {"Federated": f"arn:aws:iam::{account}:oidc-provider/token.actions.example.com"}
        ),
    )
    iam.create_user(UserName="breakglass")

    found = read_central_identities(
        session, Central(account=account, arrive="saml-roles"), page_size=1
    )

    assert [(u.user_name, u.emails) for u in found.users] == [
        ("admins", ["root@x.io"]),
        ("engineers", ["a@x.io", "b@x.io", "c@x.io"]),
    ]
    assert found.users[1].user_id == f"arn:aws:iam::{account}:role/sso/engineers"


def test_only_an_allowed_saml_provider_makes_a_role_federated():
    deny = {"Statement": {"Effect": "Deny", "Principal": {"Federated": SAML}}}
    assert not is_saml_federated(deny)
    assert not is_saml_federated({"Statement": [{"Effect": "Allow", "Principal": "*"}]})
    assert is_saml_federated(
        "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22"
        "Federated%22%3A%22arn%3Aaws%3Aiam%3A%3A1%3Asaml-provider%2Fx%22%7D%7D%5D%7D"
    )


def test_break_glass_principals_of_the_central_account_are_never_candidates(aws):
    session = boto3.Session(region_name="us-east-1")
    iam = session.client("iam")
    iam.create_user(UserName="jane.doe", Tags=[{"Key": "email", "Value": "j@x.io"}])
    iam.create_user(UserName="breakglass-admin", Tags=[{"Key": "email", "Value": "sec@x.io"}])
    iam.create_user(UserName="vault", Tags=[{"Key": "iamc:protected", "Value": "true"}])
    account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]

    found = read_central_identities(
        session, Central(account=account), protected_globs=("breakglass-*",)
    )

    assert [u.user_name for u in found.users] == ["jane.doe"]
