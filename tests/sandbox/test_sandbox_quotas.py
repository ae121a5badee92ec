"""The sandbox's IAM role quota and its delegated-administrator refusals, as AWS answers them."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

MANAGEMENT = "123456789012"  # moto's default account: the sandbox's organization's management
DELEGATED = "210987654321"
MEMBER = "313131313131"


def as_account(client: Any, account_id: str) -> Any:
    """A client whose requests the sandbox serves from ``account_id``."""

    def stamp(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account_id

    client.meta.events.register("before-sign.*.*", stamp)
    return client


def test_account_summary_reports_roles_and_the_configured_quota(client, control) -> None:
    iam = as_account(client("iam", max_attempts=1), "777788889999")
    summary = iam.get_account_summary()["SummaryMap"]
    assert summary["RolesQuota"] == 1000  # AWS's default
    before = summary["Roles"]
    control.configure(roles_quota=before + 2)
    trust = '{"Version":"2012-10-17","Statement":[]}'
    for n in range(2):
        iam.create_role(RoleName=f"quota-{n}", AssumeRolePolicyDocument=trust)
    summary = iam.get_account_summary()["SummaryMap"]
    assert (summary["Roles"], summary["RolesQuota"]) == (before + 2, before + 2)
    with pytest.raises(ClientError) as refused:
        iam.create_role(RoleName="one-too-many", AssumeRolePolicyDocument=trust)
    assert refused.value.response["Error"]["Code"] == "LimitExceeded"


@pytest.fixture
def organization(client) -> str:
    orgs = client("organizations")
    try:
        orgs.create_organization(FeatureSet="ALL")
    except ClientError as err:
        if err.response["Error"]["Code"] != "AlreadyInOrganizationException":
            raise
    master = orgs.describe_organization()["Organization"]["MasterAccountId"]
    assert master == MANAGEMENT
    return master


def _instance_and_set(sso: Any, name: str) -> tuple[str, str]:
    instance = sso.list_instances()["Instances"][0]["InstanceArn"]
    arn = sso.create_permission_set(InstanceArn=instance, Name=name)["PermissionSet"][
        "PermissionSetArn"
    ]
    return instance, arn


def _assign(sso: Any, instance: str, arn: str, target: str) -> dict[str, Any]:
    return sso.create_account_assignment(
        InstanceArn=instance,
        TargetId=target,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=arn,
        PrincipalType="USER",
        PrincipalId="user-d",
    )["AccountAssignmentCreationStatus"]


def test_a_delegated_admin_may_not_act_in_the_management_account(
    client, control, organization
) -> None:
    sso = as_account(client("sso-admin", max_attempts=1), DELEGATED)
    instance, arn = _instance_and_set(sso, "DelegatedSet")
    with pytest.raises(ClientError) as refused:
        _assign(sso, instance, arn, organization)
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "management account" in refused.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as refused:
        sso.provision_permission_set(
            InstanceArn=instance,
            PermissionSetArn=arn,
            TargetType="AWS_ACCOUNT",
            TargetId=organization,
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    # Other member accounts are the delegated administrator's to manage.
    assert _assign(sso, instance, arn, MEMBER)["Status"] in ("IN_PROGRESS", "SUCCEEDED")
    # The check is a setting, like the sandbox's other strictness.
    control.configure(delegated_admin_checks=False)
    assert _assign(sso, instance, arn, organization)["Status"] in ("IN_PROGRESS", "SUCCEEDED")


def test_the_management_account_may_act_in_itself(client, control, organization) -> None:
    sso = client("sso-admin", max_attempts=1)
    instance, arn = _instance_and_set(sso, "ManagementSet")
    assert _assign(sso, instance, arn, organization)["Status"] in ("IN_PROGRESS", "SUCCEEDED")
