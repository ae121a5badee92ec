"""Trust policies evaluated when roles are assumed: each replacement-role shape lets the right
principal in and keeps the wrong one out; RoleLastUsed and CloudTrail show the assumption."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from domain.errors import SandboxError
from domain.workloads import ROLE_PATH, replacement_role_name
from sandbox.oidc import GITHUB_ISSUER, github_token, token_claims
from sandbox.server import Sandbox
from sandbox.workload_control import _vendor_key
from sandbox.workload_usage import VENDOR_ACCOUNTS

GITHUB = "token.actions.githubusercontent.com"
VENDOR = VENDOR_ACCOUNTS["datadog"]


def _code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _member(client: Any, sandbox: Sandbox, name: str) -> tuple[str, Any]:
    org = client("organizations")
    with contextlib.suppress(org.exceptions.AlreadyInOrganizationException):
        org.create_organization(FeatureSet="ALL")
    account_id = org.create_account(AccountName=name, Email=f"{name}@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    creds = client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="trust-tests",
    )["Credentials"]
    iam = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    return account_id, iam


@pytest.fixture(scope="module")
def member(sandbox: Sandbox) -> tuple[str, boto3.Session]:
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=sandbox.url)

    account_id, member_session = _member(client, sandbox, "trust-member")
    member_session.client("iam", endpoint_url=sandbox.url).create_open_id_connect_provider(
        Url=GITHUB_ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )
    return account_id, member_session


def _role(sandbox: Sandbox, member: tuple[str, boto3.Session], user: str, *statements) -> str:
    iam = member[1].client("iam", endpoint_url=sandbox.url)
    trust = {"Version": "2012-10-17", "Statement": list(statements)}
    return iam.create_role(
        RoleName=replacement_role_name(user),
        Path=ROLE_PATH,
        AssumeRolePolicyDocument=json.dumps(trust),
    )["Role"]["Arn"]


def _github(account_id: str, sub: str, operator: str = "StringEquals") -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::{account_id}:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {f"{GITHUB}:aud": "sts.amazonaws.com"},
            operator: {f"{GITHUB}:sub": sub},
        },
    }


def _service(service: str, account_id: str) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }


def _web_identity(sandbox: Sandbox, role_arn: str, token: str) -> dict[str, Any]:
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    return sts.assume_role_with_web_identity(
        RoleArn=role_arn, RoleSessionName="gha", WebIdentityToken=token
    )


def test_github_token_has_githubs_claim_shape() -> None:
    claims = token_claims(github_token("acme/web", ref="refs/heads/release"))
    assert claims is not None
    assert claims["iss"] == GITHUB_ISSUER
    assert claims["sub"] == "repo:acme/web:ref:refs/heads/release"
    assert (claims["aud"], claims["repository"], claims["repository_owner"]) == (
        "sts.amazonaws.com",
        "acme/web",
        "acme",
    )
    assert claims["exp"] > claims["iat"]


def test_github_oidc_role_admits_only_its_repository(sandbox, member, control) -> None:
    account_id = member[0]
    arn = _role(
        sandbox, member, "ci-deployer", _github(account_id, "repo:acme/app:ref:refs/heads/main")
    )
    answer = _web_identity(sandbox, arn, github_token("acme/app"))
    assert answer["Credentials"]["AccessKeyId"]
    assert answer["AssumedRoleUser"]["Arn"].endswith("/gha")

    for token in (
        github_token("acme/other"),  # another repository
        github_token("acme/app", ref="refs/heads/feature"),  # another branch
    ):
        with pytest.raises(ClientError) as denied:
            _web_identity(sandbox, arn, token)
        assert _code(denied) == ("AccessDenied", 403)

    with pytest.raises(ClientError) as wrong_aud:
        _web_identity(sandbox, arn, github_token("acme/app", audience="sigstore"))
    assert _code(wrong_aud) == ("InvalidIdentityToken", 400)
    with pytest.raises(ClientError) as not_jwt:
        _web_identity(sandbox, arn, "not-a-token")
    assert _code(not_jwt) == ("InvalidIdentityToken", 400)

    # With the trust checks off, moto's old behaviour: anyone's token passes.
    control.configure(trust_policy_checks=False)
    assert _web_identity(sandbox, arn, github_token("acme/other"))["Credentials"]


def test_github_oidc_without_the_provider_in_the_account_is_refused(sandbox, client) -> None:
    account_id, session = _member(client, sandbox, "trust-no-provider")
    arn = _role(
        sandbox,
        (account_id, session),
        "ci-deployer",
        _github(account_id, "repo:acme/app:*", "StringLike"),
    )
    with pytest.raises(ClientError) as refused:
        _web_identity(sandbox, arn, github_token("acme/app"))
    assert _code(refused) == ("InvalidIdentityToken", 400)
    assert "No OpenIDConnect provider found" in refused.value.response["Error"]["Message"]


def test_a_wildcard_sub_lets_another_repository_in(sandbox, member) -> None:
    """A loose trust is observable: ``repo:acme/*`` admits every repository of the owner."""
    arn = _role(sandbox, member, "ci-loose", _github(member[0], "repo:acme/*", "StringLike"))
    assert _web_identity(sandbox, arn, github_token("acme/anything-else"))["Credentials"]
    with pytest.raises(ClientError) as denied:
        _web_identity(sandbox, arn, github_token("evil/app"))
    assert _code(denied) == ("AccessDenied", 403)


def test_vendor_role_needs_the_vendor_account_and_its_external_id(
    sandbox, member, client, control
) -> None:
    account_id = member[0]
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{VENDOR}:root"},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "acme-dd-7f3a"}},
    }
    arn = _role(sandbox, member, "datadog-integration", statement)
    key = _vendor_key(VENDOR)
    vendor_sts = boto3.client("sts", endpoint_url=sandbox.url, region_name="us-east-1", **key)
    assert vendor_sts.assume_role(RoleArn=arn, RoleSessionName="dd", ExternalId="acme-dd-7f3a")
    for extra in ({"ExternalId": "guess"}, {}):
        with pytest.raises(ClientError) as denied:
            vendor_sts.assume_role(RoleArn=arn, RoleSessionName="dd", **extra)
        assert _code(denied) == ("AccessDenied", 403)
        assert (
            f"arn:aws:iam::{VENDOR}:user/vendor-integration"
            in denied.value.response["Error"]["Message"]
        )
    # The management account is another account: the right ExternalId does not help it.
    with pytest.raises(ClientError) as other:
        client("sts").assume_role(RoleArn=arn, RoleSessionName="mgmt", ExternalId="acme-dd-7f3a")
    assert _code(other) == ("AccessDenied", 403)

    switched = control.switch_workload(account_id, "datadog-integration", "vendor")
    assert switched["switched"] is True and switched["role_arn"] == arn
    with pytest.raises(SandboxError, match="403"):
        control.switch_workload(
            account_id, "datadog-integration", "vendor", vendor_account="111122223333"
        )
    with pytest.raises(SandboxError, match="AccessDenied"):
        control.switch_workload(account_id, "datadog-integration", "vendor", external_id="nope")


def test_service_roles_admit_their_service_from_their_account(sandbox, member, control) -> None:
    account_id = member[0]
    _role(sandbox, member, "metrics-exporter", _service("lambda.amazonaws.com", account_id))
    _role(sandbox, member, "log-shipper", _service("ecs-tasks.amazonaws.com", account_id))

    lam = control.switch_workload(account_id, "metrics-exporter", "lambda")
    assert lam["assumed_by"].startswith("lambda.amazonaws.com")
    assert all(c["error"] is None for c in lam["calls"])
    assert control.switch_workload(account_id, "log-shipper", "ecs")["switched"] is True

    # Another account's function (the confused deputy) and another service are refused.
    with pytest.raises(SandboxError, match="aws:SourceAccount=999988887777"):
        control.switch_workload(
            account_id, "metrics-exporter", "lambda", source_account="999988887777"
        )
    with pytest.raises(SandboxError, match=r"ec2\.amazonaws\.com may not"):
        control.switch_workload(account_id, "log-shipper", "ec2")
    with pytest.raises(SandboxError, match="no role"):
        control.switch_workload(account_id, "nobody-here", "lambda")


def test_roles_anywhere_needs_the_trust_anchor_and_all_three_actions(sandbox, member, control):
    account_id = member[0]
    anchor = f"arn:aws:rolesanywhere:us-east-1:{account_id}:trust-anchor/0b1c2d3e-anchor"
    statement = {
        "Effect": "Allow",
        "Principal": {"Service": "rolesanywhere.amazonaws.com"},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {"ArnEquals": {"aws:SourceArn": anchor}},
    }
    _role(sandbox, member, "jenkins", statement)
    assert control.switch_workload(account_id, "jenkins", "on-premises")["switched"]
    with pytest.raises(SandboxError, match="aws:SourceArn"):
        control.switch_workload(
            account_id, "jenkins", "on-premises", source_arn=anchor.replace("0b1c", "ffff")
        )


def test_role_last_used_and_cloudtrail_show_the_assumption(sandbox, member, control) -> None:
    account_id, session = member
    arn = _role(
        sandbox, member, "terraform-runner", _github(account_id, "repo:acme/infra:*", "StringLike")
    )
    iam = session.client("iam", endpoint_url=sandbox.url)
    name = replacement_role_name("terraform-runner")
    assert "LastUsedDate" not in iam.get_role(RoleName=name)["Role"].get("RoleLastUsed", {})

    control.switch_workload(account_id, "terraform-runner", "terraform", repository="acme/infra")
    last_used = iam.get_role(RoleName=name)["Role"]["RoleLastUsed"]
    assert last_used["Region"] == "us-east-1"
    moved = control.shift_clock(3600)
    try:
        control.switch_workload(
            account_id, "terraform-runner", "terraform", repository="acme/infra"
        )
        later = iam.get_role(RoleName=name)["Role"]["RoleLastUsed"]["LastUsedDate"]
        assert later > last_used["LastUsedDate"]
        assert abs((later - moved).total_seconds()) < 120
        events = session.client("cloudtrail", endpoint_url=sandbox.url).lookup_events(
            LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}]
        )["Events"]
    finally:
        control.reset_clock()
    assert [e["EventName"] for e in events] == ["AssumeRoleWithWebIdentity"] * 2
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["eventSource"] == "sts.amazonaws.com"
    assert record["userIdentity"]["type"] == "WebIdentityUser"
    assert record["userIdentity"]["userName"] == "repo:acme/infra:ref:refs/heads/main"
    assert "configure-aws-credentials-for-github-actions" in record["userAgent"]
    assert record["resources"][0]["ARN"] == arn


def test_organization_access_role_admits_the_management_account_only(sandbox, member) -> None:
    account_id, session = member
    iam = session.client("iam", endpoint_url=sandbox.url)
    iam.create_user(UserName="member-user")
    key = iam.create_access_key(UserName="member-user")["AccessKey"]
    other, _ = _member(
        lambda s: boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client(s, endpoint_url=sandbox.url),
        sandbox,
        "trust-other",
    )
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    with pytest.raises(ClientError) as denied:
        sts.assume_role(
            RoleArn=f"arn:aws:iam::{other}:role/OrganizationAccountAccessRole",
            RoleSessionName="hop",
        )
    assert _code(denied) == ("AccessDenied", 403)
    assert (
        f"arn:aws:iam::{account_id}:user/member-user" in denied.value.response["Error"]["Message"]
    )
