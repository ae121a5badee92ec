"""AWSReservedSSO_* roles in member accounts follow provisioning and assignments, through boto3."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox.server import Sandbox

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
SECURITY_AUDIT = "arn:aws:iam::aws:policy/SecurityAudit"
_names = itertools.count(1)
_INLINE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "aws-portal:*", "Resource": "*"}],
    }
)


def _member(sandbox: Sandbox, session: boto3.Session, name: str) -> tuple[str, Any]:
    org = session.client("organizations", endpoint_url=sandbox.url)
    try:
        org.create_organization(FeatureSet="ALL")
    except ClientError as err:
        assert err.response["Error"]["Code"] == "AlreadyInOrganizationException"
    account_id = org.create_account(AccountName=name, Email=f"{name}@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    creds = session.client("sts", endpoint_url=sandbox.url).assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="sso-roles",
    )["Credentials"]
    member = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return account_id, member.client("iam", endpoint_url=sandbox.url)


@pytest.fixture(scope="module")
def accounts(sandbox: Sandbox) -> dict[str, Any]:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    with_policy, with_policy_iam = _member(sandbox, session, "sso-roles-a")
    with_policy_iam.create_policy(
        PolicyName="app-read", Path="/team/", PolicyDocument=_INLINE.replace("Deny", "Allow")
    )
    without_policy, without_policy_iam = _member(sandbox, session, "sso-roles-b")
    return {
        "a": with_policy,
        "a_iam": with_policy_iam,
        "b": without_policy,
        "b_iam": without_policy_iam,
    }


@pytest.fixture
def permission_set(client, control) -> dict[str, str]:
    control.configure(async_in_progress_polls=0)
    sso = client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    name = f"Dev{next(_names)}"
    arn = sso.create_permission_set(InstanceArn=instance, Name=name, SessionDuration="PT4H")[
        "PermissionSet"
    ]["PermissionSetArn"]
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=instance, PermissionSetArn=arn, ManagedPolicyArn=READ_ONLY
    )
    sso.put_inline_policy_to_permission_set(
        InstanceArn=instance, PermissionSetArn=arn, InlinePolicy=_INLINE
    )
    return {"instance": instance, "arn": arn, "name": name}


def _assignment(ps: dict[str, str], account_id: str, principal: str) -> dict[str, str]:
    return {
        "InstanceArn": ps["instance"],
        "TargetId": account_id,
        "TargetType": "AWS_ACCOUNT",
        "PermissionSetArn": ps["arn"],
        "PrincipalType": "USER",
        "PrincipalId": principal,
    }


def _sso_roles(iam: Any, name: str) -> list[dict[str, Any]]:
    roles = iam.list_roles(PathPrefix="/aws-reserved/sso.amazonaws.com/")["Roles"]
    return [r for r in roles if r["RoleName"].startswith(f"AWSReservedSSO_{name}_")]


def _final(sso: Any, instance: str, kind: str, request_id: str) -> dict[str, Any]:
    if kind == "creation":
        return sso.describe_account_assignment_creation_status(
            InstanceArn=instance, AccountAssignmentCreationRequestId=request_id
        )["AccountAssignmentCreationStatus"]
    return sso.describe_permission_set_provisioning_status(
        InstanceArn=instance, ProvisionPermissionSetRequestId=request_id
    )["PermissionSetProvisioningStatus"]


def test_assignment_creates_the_role_and_the_last_deletion_removes_it(
    client, accounts, permission_set
) -> None:
    sso, iam, account = client("sso-admin"), accounts["a_iam"], accounts["a"]
    assert _sso_roles(iam, permission_set["name"]) == []
    sso.create_account_assignment(**_assignment(permission_set, account, "user-1"))

    [role] = _sso_roles(iam, permission_set["name"])
    assert re.fullmatch(
        rf"AWSReservedSSO_{permission_set['name']}_[0-9a-f]{{16}}", role["RoleName"]
    )
    assert role["Path"] == "/aws-reserved/sso.amazonaws.com/"
    name = role["RoleName"]
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    statement = trust["Statement"][0]
    assert "sts:AssumeRoleWithSAML" in statement["Action"]
    assert ":saml-provider/AWSSSO_" in statement["Principal"]["Federated"]
    assert statement["Condition"]["StringEquals"]["SAML:aud"] == (
        "https://signin.aws.amazon.com/saml"
    )
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [READ_ONLY]
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == ["AwsSSOInlinePolicy"]
    inline = iam.get_role_policy(RoleName=name, PolicyName="AwsSSOInlinePolicy")
    assert inline["PolicyDocument"]["Statement"][0]["Action"] == "aws-portal:*"
    assert iam.get_role(RoleName=name)["Role"]["MaxSessionDuration"] == 4 * 3600

    # A second assignment of the set in the account shares the role.
    sso.create_account_assignment(**_assignment(permission_set, account, "user-2"))
    assert [r["RoleName"] for r in _sso_roles(iam, permission_set["name"])] == [name]

    sso.delete_account_assignment(**_assignment(permission_set, account, "user-1"))
    assert [r["RoleName"] for r in _sso_roles(iam, permission_set["name"])] == [name]
    sso.delete_account_assignment(**_assignment(permission_set, account, "user-2"))
    assert _sso_roles(iam, permission_set["name"]) == []

    # Assigned again: the same name (the suffix is stable per account and permission set).
    sso.create_account_assignment(**_assignment(permission_set, account, "user-3"))
    assert [r["RoleName"] for r in _sso_roles(iam, permission_set["name"])] == [name]


def test_reprovisioning_updates_the_role(client, accounts, permission_set) -> None:
    sso, iam, account = client("sso-admin"), accounts["a_iam"], accounts["a"]
    ps = permission_set
    sso.create_account_assignment(**_assignment(ps, account, "user-r"))
    [role] = _sso_roles(iam, ps["name"])

    sso.detach_managed_policy_from_permission_set(
        InstanceArn=ps["instance"], PermissionSetArn=ps["arn"], ManagedPolicyArn=READ_ONLY
    )
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=ps["instance"], PermissionSetArn=ps["arn"], ManagedPolicyArn=SECURITY_AUDIT
    )
    sso.attach_customer_managed_policy_reference_to_permission_set(
        InstanceArn=ps["instance"],
        PermissionSetArn=ps["arn"],
        CustomerManagedPolicyReference={"Name": "app-read", "Path": "/team/"},
    )
    sso.delete_inline_policy_from_permission_set(
        InstanceArn=ps["instance"], PermissionSetArn=ps["arn"]
    )
    # Editing the set changes nothing in the account until it is provisioned again.
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [READ_ONLY]

    provisioned = sso.provision_permission_set(
        InstanceArn=ps["instance"],
        PermissionSetArn=ps["arn"],
        TargetType="ALL_PROVISIONED_ACCOUNTS",
    )["PermissionSetProvisioningStatus"]
    assert _final(sso, ps["instance"], "provisioning", provisioned["RequestId"])["Status"] == (
        "SUCCEEDED"
    )
    attached = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert {p["PolicyArn"] for p in attached} == {
        SECURITY_AUDIT,
        f"arn:aws:iam::{account}:policy/team/app-read",
    }
    assert iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"] == []


def test_provisioning_to_an_account_creates_the_role(client, accounts, permission_set) -> None:
    sso, ps = client("sso-admin"), permission_set
    provisioned = sso.provision_permission_set(
        InstanceArn=ps["instance"],
        PermissionSetArn=ps["arn"],
        TargetType="AWS_ACCOUNT",
        TargetId=accounts["b"],
    )["PermissionSetProvisioningStatus"]
    assert _final(sso, ps["instance"], "provisioning", provisioned["RequestId"])["Status"] == (
        "SUCCEEDED"
    )
    [role] = _sso_roles(accounts["b_iam"], ps["name"])
    # Another account, another suffix.
    sso.create_account_assignment(**_assignment(ps, accounts["a"], "user-x"))
    [other] = _sso_roles(accounts["a_iam"], ps["name"])
    assert role["RoleName"] != other["RoleName"]


def test_missing_customer_managed_policy_fails_provisioning(
    client, accounts, permission_set
) -> None:
    sso, ps = client("sso-admin"), permission_set
    sso.attach_customer_managed_policy_reference_to_permission_set(
        InstanceArn=ps["instance"],
        PermissionSetArn=ps["arn"],
        CustomerManagedPolicyReference={"Name": "app-read", "Path": "/team/"},
    )
    # Account b has no /team/app-read policy.
    provisioned = sso.provision_permission_set(
        InstanceArn=ps["instance"],
        PermissionSetArn=ps["arn"],
        TargetType="AWS_ACCOUNT",
        TargetId=accounts["b"],
    )["PermissionSetProvisioningStatus"]
    final = _final(sso, ps["instance"], "provisioning", provisioned["RequestId"])
    assert final["Status"] == "FAILED"
    assert "app-read" in final["FailureReason"]
    created = sso.create_account_assignment(**_assignment(ps, accounts["b"], "user-f"))[
        "AccountAssignmentCreationStatus"
    ]
    assert _final(sso, ps["instance"], "creation", created["RequestId"])["Status"] == "FAILED"
    assert _sso_roles(accounts["b_iam"], ps["name"]) == []
    # Account a has the policy: the same set provisions there.
    sso.create_account_assignment(**_assignment(ps, accounts["a"], "user-ok"))
    [role] = _sso_roles(accounts["a_iam"], ps["name"])
    attached = accounts["a_iam"].list_attached_role_policies(RoleName=role["RoleName"])
    assert f"arn:aws:iam::{accounts['a']}:policy/team/app-read" in {
        p["PolicyArn"] for p in attached["AttachedPolicies"]
    }
