"""The central-roles target's sandbox: the identity account's people with MFA, and AssumeRole
into member roles as STS answers it (MFA in the trust's context, the caller's own policies)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from domain.central_roles import assume_policy, trust_policy
from domain.central_spec import Central
from domain.errors import SandboxError
from sandbox.control import SandboxControl
from sandbox.seed import seed_organization
from sandbox.seed_manifest import SeedManifest
from sandbox.server import Sandbox
from sandbox.trust import aws_caller, evaluate

SEED = 23
SIZE = {"accounts": 2, "users_per_account": 6}
TOKEN = "123456"


def _session(creds: dict[str, Any]) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
        region_name="us-east-1",
    )


def _management() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def _in_account(sandbox: Sandbox, account_id: str) -> boto3.Session:
    """The management account's root in ``account_id`` through OrganizationAccountAccessRole."""
    creds = (
        _management()
        .client("sts", endpoint_url=sandbox.url)
        .assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="central-tests",
        )["Credentials"]
    )
    return _session(creds)


def _seed(sandbox: Sandbox, **kwargs: Any) -> SeedManifest:
    sandbox.reset(seed=SEED)
    return seed_organization(_management(), seed=SEED, endpoint_url=sandbox.url, **SIZE, **kwargs)


def _users(sandbox: Sandbox, account_id: str) -> dict[str, str]:
    iam = _in_account(sandbox, account_id).client("iam", endpoint_url=sandbox.url)
    return {
        u["UserName"]: u["UserId"]
        for page in iam.get_paginator("list_users").paginate()
        for u in page["Users"]
    }


@pytest.fixture(scope="module")
def seeds(sandbox: Sandbox) -> dict[str, Any]:
    """A default seed and the same seed with the central account, with their members' users;
    the central one is left running for the tests that follow."""
    default = _seed(sandbox)
    default_users = {a.account_id: _users(sandbox, a.account_id) for a in default.accounts}
    central = _seed(sandbox, central=True)
    central_users = {a.account_id: _users(sandbox, a.account_id) for a in central.accounts}
    return {
        "default": default,
        "default_users": default_users,
        "central": central,
        "central_users": central_users,
    }


@pytest.fixture(scope="module")
def org(seeds: dict[str, Any], sandbox: Sandbox) -> dict[str, Any]:
    """The central seed: its manifest, the identity account and a member account's IAM."""
    manifest: SeedManifest = seeds["central"]
    assert manifest.central_account
    member = manifest.accounts[0].account_id
    return {
        "manifest": manifest,
        "central": manifest.central_account,
        "member": member,
        "member_iam": _in_account(sandbox, member).client("iam", endpoint_url=sandbox.url),
        "central_iam": _in_account(sandbox, manifest.central_account).client(
            "iam", endpoint_url=sandbox.url
        ),
        "spec": Central(account=manifest.central_account),
    }


def _person(org: dict[str, Any], index: int) -> dict[str, str]:
    return org["manifest"].central_users[index]


def _role(org: dict[str, Any], name: str, trust: dict[str, Any]) -> str:
    return org["member_iam"].create_role(
        RoleName=name, Path="/iamc/", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]


def _sts(sandbox: Sandbox, control: SandboxControl, org: dict[str, Any], user: str) -> Any:
    key_id, secret = control.mint_user_key(org["central"], user)
    return boto3.client(
        "sts",
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def _assume(sts: Any, role_arn: str, serial: str | None = None, token: str = TOKEN) -> Any:
    extra = {"SerialNumber": serial, "TokenCode": token} if serial else {}
    return sts.assume_role(RoleArn=role_arn, RoleSessionName="person", **extra)


def _denied(call: Any) -> str:
    with pytest.raises(ClientError) as denied:
        call()
    error = denied.value.response["Error"]
    assert (error["Code"], denied.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "AccessDenied",
        403,
    )
    return str(error["Message"])


# -- seed ---------------------------------------------------------------------------------


def test_central_seed_adds_the_identity_account_and_leaves_the_rest_as_it_was(seeds) -> None:
    default, central = seeds["default"], seeds["central"]
    assert default.central_account is None and default.central_users == []
    assert default.to_dict()["central_account"] is None

    def shape(manifest: SeedManifest) -> list[tuple]:
        return [
            (a.account_id, a.name, a.status, [(u.name, u.kind, u.expected_class) for u in a.users])
            for a in manifest.accounts
        ]

    assert shape(central) == shape(default)
    assert central.identity_users == default.identity_users
    assert central.identity_groups == default.identity_groups
    assert central.sample_key_id == default.sample_key_id
    assert central.planted_keys == default.planted_keys
    assert seeds["central_users"] == seeds["default_users"]  # the same users, the same ids
    assert central.central_account not in {a.account_id for a in central.accounts}


def test_identity_account_holds_the_people_with_mfa_and_nothing_else(org, sandbox, client):
    manifest, central = org["manifest"], org["central"]
    accounts = {a["Id"]: a for a in client("organizations").list_accounts()["Accounts"]}
    assert accounts[central]["Name"] == "identity"
    assert accounts[central]["Status"] == "ACTIVE"
    iam = org["central_iam"]
    people = sorted(u["user_name"] for u in manifest.identity_users)
    assert sorted(_users(sandbox, central)) == people
    assert sorted(u["user_name"] for u in manifest.central_users) == people
    assert "alex.kim@contractors.example.com" in people  # the ambiguous pair are people too
    for person in manifest.central_users:
        name = person["user_name"]
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=name)["Tags"]}
        assert tags == {"email": name}
        devices = iam.list_mfa_devices(UserName=name)["MFADevices"]
        assert [d["SerialNumber"] for d in devices] == [person["mfa_serial"]]
        assert person["mfa_serial"] == f"arn:aws:iam::{central}:mfa/{name}"
        assert person["arn"] == f"arn:aws:iam::{central}:user/{name}"
        assert not iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert not iam.list_groups()["Groups"]  # none of the member accounts' groups


def test_control_mints_a_persons_key_and_names_their_mfa_device(org, control) -> None:
    person = _person(org, 0)
    first = control.mint_user_key(org["central"], person["user_name"])
    assert first == control.mint_user_key(org["central"], person["user_name"])  # kept
    assert control.mfa_serial(org["central"], person["user_name"]) == person["mfa_serial"]
    with pytest.raises(SandboxError, match="404"):
        control.mint_user_key(org["central"], "nobody@example.com")


# -- trust: MFA ---------------------------------------------------------------------------


def test_bool_conditions_never_match_an_absent_key() -> None:
    trust = trust_policy(["arn:aws:iam::111122223333:user/jane"], Central(account="1" * 12))
    jane = "arn:aws:iam::111122223333:user/jane"
    assert not evaluate(trust, "sts:AssumeRole", aws_caller(jane, "111122223333")).allowed
    with_mfa = aws_caller(jane, "111122223333", **{"aws:MultiFactorAuthPresent": "true"})
    assert evaluate(trust, "sts:AssumeRole", with_mfa).allowed
    negated = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": jane},
                "Action": "sts:AssumeRole",
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}},
            }
        ]
    }
    # "false" does not stand for "absent" either.
    assert not evaluate(negated, "sts:AssumeRole", aws_caller(jane, "111122223333")).allowed


def test_a_role_naming_one_person_admits_that_person_with_mfa_only(org, sandbox, control):
    jane, john = _person(org, 0), _person(org, 1)
    role = _role(org, "iamc-one-person", trust_policy([jane["arn"]], org["spec"]))
    # Both people's own policies allow the switch (a group's, as the target grants it).
    iam = org["central_iam"]
    iam.create_group(GroupName="iamc-one-person", Path="/iamc/")
    iam.put_group_policy(
        GroupName="iamc-one-person",
        PolicyName="assume-one-person",
        PolicyDocument=json.dumps(assume_policy([role], org["spec"])),
    )
    for person in (jane, john):
        iam.add_user_to_group(GroupName="iamc-one-person", UserName=person["user_name"])

    sts = _sts(sandbox, control, org, jane["user_name"])
    assumed = _assume(sts, role, jane["mfa_serial"])
    assert assumed["AssumedRoleUser"]["Arn"].endswith(":assumed-role/iamc-one-person/person")
    message = _denied(lambda: _assume(sts, role))  # no SerialNumber/TokenCode: no MFA
    assert jane["arn"] in message and role in message
    assert "MultiFactorAuthentication" in _denied(lambda: _assume(sts, role, john["mfa_serial"]))
    assert "MultiFactorAuthentication" in _denied(
        lambda: _assume(sts, role, jane["mfa_serial"], token="12345x")
    )
    # Another person, with MFA and a policy that allows it: not in the trust.
    other = _sts(sandbox, control, org, john["user_name"])
    assert john["arn"] in _denied(lambda: _assume(other, role, john["mfa_serial"]))


def test_a_role_trusting_the_central_root_admits_anyone_there_allowed_to_switch(
    org, sandbox, control
) -> None:
    """The case the tool's verify must catch: the account root trusts every principal of the
    central account whose own policy allows sts:AssumeRole, whoever the role was meant for."""
    anyone, nobody = _person(org, 2), _person(org, 3)
    root = f"arn:aws:iam::{org['central']}:root"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": root}, "Action": "sts:AssumeRole"}],
    }
    role = _role(org, "iamc-root-trusted", trust)
    org["central_iam"].put_user_policy(
        UserName=anyone["user_name"],
        PolicyName="assume-anything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:*", "Resource": "*"}],
            }
        ),
    )
    assert _assume(_sts(sandbox, control, org, anyone["user_name"]), role)["Credentials"]
    # The trust lets in the whole account; the identity side keeps out who has no policy.
    denied = _sts(sandbox, control, org, nobody["user_name"])
    assert nobody["arn"] in _denied(lambda: _assume(denied, role, nobody["mfa_serial"]))


# -- the identity side ---------------------------------------------------------------------


def test_cross_account_callers_need_their_own_policy_to_allow_the_switch(
    org, sandbox, control
) -> None:
    person = _person(org, 4)
    name = person["user_name"]
    role = _role(org, "iamc-identity-side", trust_policy([person["arn"]], org["spec"]))
    sts = _sts(sandbox, control, org, name)
    # The trust allows it; the person's own policies don't.
    assert person["arn"] in _denied(lambda: _assume(sts, role, person["mfa_serial"]))

    iam = org["central_iam"]
    elsewhere = role.replace("iamc-identity-side", "iamc-some-other-role")
    iam.put_user_policy(
        UserName=name,
        PolicyName="assume",
        PolicyDocument=json.dumps(assume_policy([elsewhere], org["spec"])),
    )
    _denied(lambda: _assume(sts, role, person["mfa_serial"]))  # another role's ARN
    iam.put_user_policy(
        UserName=name,
        PolicyName="assume",
        PolicyDocument=json.dumps(assume_policy([role], org["spec"])),
    )
    # The policy itself requires MFA: the same context is evaluated on both sides.
    assert _assume(sts, role, person["mfa_serial"])["Credentials"]
    iam.create_group(GroupName="no-switching")
    iam.put_group_policy(
        GroupName="no-switching",
        PolicyName="deny",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "*"}],
            }
        ),
    )
    iam.add_user_to_group(GroupName="no-switching", UserName=name)
    _denied(lambda: _assume(sts, role, person["mfa_serial"]))  # a group's explicit deny

    control.configure(identity_policy_checks=False)
    assert _assume(sts, role, person["mfa_serial"])["Credentials"]


def test_a_role_session_needs_its_roles_policy_and_root_callers_none(org, sandbox) -> None:
    """The tool's own path (the management account's root key into each member's
    OrganizationAccountAccessRole) keeps working; a role session going on to another account
    needs its role's policy to allow it (moto gives OrganizationAccountAccessRole none)."""
    member, central = org["member"], org["central"]
    target = _role(
        org,
        "iamc-from-a-session",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{central}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        },
    )
    hop = _in_account(sandbox, central)  # a root caller: no identity policy needed
    sts = hop.client("sts", endpoint_url=sandbox.url)
    message = _denied(lambda: sts.assume_role(RoleArn=target, RoleSessionName="hop"))
    assert "assumed-role/OrganizationAccountAccessRole" in message
    hop.client("iam", endpoint_url=sandbox.url).put_role_policy(
        RoleName="OrganizationAccountAccessRole",
        PolicyName="hop",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": target}],
            }
        ),
    )
    assert sts.assume_role(RoleArn=target, RoleSessionName="hop")["Credentials"]
    assert member != central
