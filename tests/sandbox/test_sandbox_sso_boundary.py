"""Permission-set boundaries in the sandbox: the three sso-admin calls as AWS answers them,
and the provisioned role's IAM permissions boundary (moto 5.2.5 implements none of it)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox.server import Sandbox
from tests.sandbox.test_sandbox_sso_roles import _assignment, _final, _member, _sso_roles

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
POWER_USER = "arn:aws:iam::aws:policy/PowerUserAccess"
_names = itertools.count(1)


@pytest.fixture(scope="module")
def accounts(sandbox: Sandbox) -> dict[str, Any]:
    """Account a has the customer-managed policy /team/app-read; account b has not."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    a, a_iam = _member(sandbox, session, "boundary-a")
    a_iam.create_policy(
        PolicyName="app-read",
        Path="/team/",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}],
            }
        ),
    )
    b, b_iam = _member(sandbox, session, "boundary-b")
    return {"a": a, "a_iam": a_iam, "b": b, "b_iam": b_iam}


@pytest.fixture
def permission_set(client, control) -> dict[str, Any]:
    control.configure(async_in_progress_polls=0)
    sso = client("sso-admin")
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    name = f"Bounded{next(_names)}"
    arn = sso.create_permission_set(InstanceArn=instance, Name=name, SessionDuration="PT1H")[
        "PermissionSet"
    ]["PermissionSetArn"]
    return {
        "instance": instance,
        "arn": arn,
        "name": name,
        "ids": {"InstanceArn": instance, "PermissionSetArn": arn},
    }


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return err.value.response["Error"]["Code"]


def test_put_get_delete_round_trip(client, permission_set) -> None:
    sso, ids = client("sso-admin"), permission_set["ids"]
    with pytest.raises(ClientError) as none_yet:
        sso.get_permissions_boundary_for_permission_set(**ids)
    assert _code(none_yet) == "ResourceNotFoundException"

    sso.put_permissions_boundary_to_permission_set(
        **ids, PermissionsBoundary={"CustomerManagedPolicyReference": {"Name": "app-read"}}
    )
    got = sso.get_permissions_boundary_for_permission_set(**ids)["PermissionsBoundary"]
    # Path defaults to "/", as AWS fills it in.
    assert got == {"CustomerManagedPolicyReference": {"Name": "app-read", "Path": "/"}}

    sso.put_permissions_boundary_to_permission_set(
        **ids, PermissionsBoundary={"ManagedPolicyArn": POWER_USER}
    )
    got = sso.get_permissions_boundary_for_permission_set(**ids)["PermissionsBoundary"]
    assert got == {"ManagedPolicyArn": POWER_USER}  # one boundary: the second replaced it

    sso.delete_permissions_boundary_from_permission_set(**ids)
    with pytest.raises(ClientError) as gone:
        sso.get_permissions_boundary_for_permission_set(**ids)
    assert _code(gone) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as again:
        sso.delete_permissions_boundary_from_permission_set(**ids)
    assert _code(again) == "ResourceNotFoundException"


@pytest.mark.parametrize(
    "boundary",
    [
        {},
        {
            "ManagedPolicyArn": POWER_USER,
            "CustomerManagedPolicyReference": {"Name": "app-read", "Path": "/team/"},
        },
        # A customer-managed policy's ARN is not an AWS-managed one: it goes by reference.
        {"ManagedPolicyArn": "arn:aws:iam::123456789012:policy/app-read"},
        {"CustomerManagedPolicyReference": {"Name": "app-read", "Path": "team"}},
    ],
    ids=["neither", "both", "customer-arn", "bad-path"],
)
def test_put_refuses_what_aws_refuses(client, permission_set, boundary) -> None:
    sso, ids = client("sso-admin"), permission_set["ids"]
    with pytest.raises(ClientError) as refused:
        sso.put_permissions_boundary_to_permission_set(**ids, PermissionsBoundary=boundary)
    assert _code(refused) == "ValidationException"
    with pytest.raises(ClientError):
        sso.get_permissions_boundary_for_permission_set(**ids)  # nothing was stored


def test_unknown_permission_set_is_not_found(client, permission_set) -> None:
    sso = client("sso-admin")
    ids = {**permission_set["ids"], "PermissionSetArn": permission_set["arn"] + "0"}
    with pytest.raises(ClientError) as missing:
        sso.put_permissions_boundary_to_permission_set(
            **ids, PermissionsBoundary={"ManagedPolicyArn": POWER_USER}
        )
    assert _code(missing) == "ResourceNotFoundException"


def _role(iam: Any, name: str) -> dict[str, Any]:
    [listed] = _sso_roles(iam, name)
    # ListRoles never shows a boundary (IAM API reference, ListRoles): GetRole does.
    assert "PermissionsBoundary" not in listed
    return iam.get_role(RoleName=listed["RoleName"])["Role"]


def test_provisioned_role_carries_the_boundary_resolved_in_its_account(
    client, accounts, permission_set
) -> None:
    sso, ids = client("sso-admin"), permission_set["ids"]
    sso.attach_managed_policy_to_permission_set(**ids, ManagedPolicyArn=READ_ONLY)
    sso.put_permissions_boundary_to_permission_set(
        **ids,
        PermissionsBoundary={
            "CustomerManagedPolicyReference": {"Name": "app-read", "Path": "/team/"}
        },
    )
    sso.create_account_assignment(**_assignment(permission_set, accounts["a"], "user-1"))
    role = _role(accounts["a_iam"], permission_set["name"])
    assert role["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": f"arn:aws:iam::{accounts['a']}:policy/team/app-read",
    }

    # A changed boundary reaches the role when the set is provisioned again.
    sso.put_permissions_boundary_to_permission_set(
        **ids, PermissionsBoundary={"ManagedPolicyArn": POWER_USER}
    )
    assert _role(accounts["a_iam"], permission_set["name"])["PermissionsBoundary"][
        "PermissionsBoundaryArn"
    ].endswith(":policy/team/app-read")
    request = sso.provision_permission_set(**ids, TargetType="AWS_ACCOUNT", TargetId=accounts["a"])[
        "PermissionSetProvisioningStatus"
    ]
    assert (
        _final(sso, permission_set["instance"], "provisioning", request["RequestId"])["Status"]
        == "SUCCEEDED"
    )
    role = _role(accounts["a_iam"], permission_set["name"])
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == POWER_USER

    sso.delete_permissions_boundary_from_permission_set(**ids)
    sso.provision_permission_set(**ids, TargetType="AWS_ACCOUNT", TargetId=accounts["a"])
    assert "PermissionsBoundary" not in _role(accounts["a_iam"], permission_set["name"])


def test_provisioning_fails_where_the_boundary_policy_is_missing(
    client, accounts, permission_set
) -> None:
    sso, ids = client("sso-admin"), permission_set["ids"]
    sso.put_permissions_boundary_to_permission_set(
        **ids,
        PermissionsBoundary={
            "CustomerManagedPolicyReference": {"Name": "app-read", "Path": "/team/"}
        },
    )
    # Account b has no /team/app-read: the set can't be provisioned or assigned there.
    request = sso.provision_permission_set(**ids, TargetType="AWS_ACCOUNT", TargetId=accounts["b"])[
        "PermissionSetProvisioningStatus"
    ]
    final = _final(sso, permission_set["instance"], "provisioning", request["RequestId"])
    assert final["Status"] == "FAILED"
    assert f"arn:aws:iam::{accounts['b']}:policy/team/app-read" in final["FailureReason"]
    created = sso.create_account_assignment(**_assignment(permission_set, accounts["b"], "u-2"))
    status = _final(
        sso,
        permission_set["instance"],
        "creation",
        created["AccountAssignmentCreationStatus"]["RequestId"],
    )
    assert status["Status"] == "FAILED"
    assert _sso_roles(accounts["b_iam"], permission_set["name"]) == []
