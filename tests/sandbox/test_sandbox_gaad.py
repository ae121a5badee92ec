"""GetAccountAuthorizationDetails: AWS's policy list (attached AWS-managed only) and real paging."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from sandbox import gaad
from sandbox.server import Sandbox

READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
SECURITY_AUDIT = "arn:aws:iam::aws:policy/SecurityAudit"
NEVER_ATTACHED = "arn:aws:iam::aws:policy/AmazonEC2FullAccess"
_S3_READ = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


@pytest.fixture(scope="module")
def account(sandbox: Sandbox) -> dict[str, Any]:
    """A fresh member account with a few users, a group, a role and policies."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    org = session.client("organizations", endpoint_url=sandbox.url)
    try:
        org.create_organization(FeatureSet="ALL")
    except ClientError as err:
        assert err.response["Error"]["Code"] == "AlreadyInOrganizationException"
    account_id = org.create_account(AccountName="gaad", Email="gaad@example.com")[
        "CreateAccountStatus"
    ]["AccountId"]
    creds = session.client("sts", endpoint_url=sandbox.url).assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="gaad",
    )["Credentials"]
    member = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="us-east-1",
    )
    iam = member.client("iam", endpoint_url=sandbox.url)
    for index in range(4):
        iam.create_user(UserName=f"user-{index}")
        iam.put_user_policy(
            UserName=f"user-{index}", PolicyName="s3", PolicyDocument=json.dumps(_S3_READ)
        )
    iam.attach_user_policy(UserName="user-0", PolicyArn=READ_ONLY)
    iam.create_group(GroupName="auditors")
    iam.attach_group_policy(GroupName="auditors", PolicyArn=SECURITY_AUDIT)
    iam.add_user_to_group(UserName="user-1", GroupName="auditors")
    customer = iam.create_policy(PolicyName="app-read", PolicyDocument=json.dumps(_S3_READ))
    return {"iam": iam, "account_id": account_id, "customer": customer["Policy"]["Arn"]}


def _all(iam: Any, **kwargs: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {
        "UserDetailList": [],
        "GroupDetailList": [],
        "RoleDetailList": [],
        "Policies": [],
    }
    for page in iam.get_paginator("get_account_authorization_details").paginate(**kwargs):
        for key, items in out.items():
            items.extend(page.get(key, []))
    return out


def test_policies_are_customer_managed_and_attached_aws_managed(account) -> None:
    details = account["iam"].get_account_authorization_details()
    arns = {p["Arn"] for p in details["Policies"]}
    assert {READ_ONLY, SECURITY_AUDIT, account["customer"]} <= arns
    assert NEVER_ATTACHED not in arns
    # moto alone returns every AWS-managed policy (~1,580).
    assert len(arns) < 20
    read_only = next(p for p in details["Policies"] if p["Arn"] == READ_ONLY)
    assert read_only["AttachmentCount"] == 1
    assert read_only["PolicyVersionList"][0]["Document"]
    users = {u["UserName"]: u for u in details["UserDetailList"]}
    assert users["user-0"]["AttachedManagedPolicies"][0]["PolicyArn"] == READ_ONLY
    assert users["user-1"]["GroupList"] == ["auditors"]
    assert users["user-2"]["UserPolicyList"][0]["PolicyName"] == "s3"
    assert details["GroupDetailList"][0]["AttachedManagedPolicies"][0]["PolicyArn"] == (
        SECURITY_AUDIT
    )
    assert "OrganizationAccountAccessRole" in {r["RoleName"] for r in details["RoleDetailList"]}


def test_detaching_the_last_attachment_drops_an_aws_managed_policy(account) -> None:
    iam = account["iam"]
    iam.attach_user_policy(UserName="user-3", PolicyArn=NEVER_ATTACHED)
    assert NEVER_ATTACHED in {p["Arn"] for p in _all(iam)["Policies"]}
    iam.detach_user_policy(UserName="user-3", PolicyArn=NEVER_ATTACHED)
    assert NEVER_ATTACHED not in {p["Arn"] for p in _all(iam)["Policies"]}


def _stable(item: dict[str, Any]) -> str:
    """An item as JSON without RoleLastUsed: the reading session's own role is used by every
    read (as in AWS), so its last use can move a second on between two reads."""
    return json.dumps(
        {k: v for k, v in item.items() if k != "RoleLastUsed"}, default=str, sort_keys=True
    )


def test_max_items_pages_across_all_lists(account) -> None:
    iam = account["iam"]
    whole = iam.get_account_authorization_details()
    assert whole["IsTruncated"] is False
    first = iam.get_account_authorization_details(MaxItems=2)
    assert first["IsTruncated"] is True and first["Marker"]
    assert len(first["UserDetailList"]) == 2
    paged = _all(iam, PaginationConfig={"PageSize": 2})
    for key, items in paged.items():
        assert [_stable(i) for i in items] == [_stable(i) for i in whole[key]], key
    pages = list(
        iam.get_paginator("get_account_authorization_details").paginate(
            PaginationConfig={"PageSize": 3}
        )
    )
    total = sum(len(whole[k]) for k in paged)
    assert len(pages) == -(-total // 3)


def test_filter_selects_entity_kinds(account) -> None:
    iam = account["iam"]
    local = iam.get_account_authorization_details(Filter=["LocalManagedPolicy"])
    assert [p["Arn"] for p in local["Policies"]] == [account["customer"]]
    assert local["UserDetailList"] == [] and local["RoleDetailList"] == []
    users = iam.get_account_authorization_details(Filter=["User", "AWSManagedPolicy"])
    assert len(users["UserDetailList"]) == 4
    assert account["customer"] not in {p["Arn"] for p in users["Policies"]}
    assert READ_ONLY in {p["Arn"] for p in users["Policies"]}


def test_bad_marker_and_max_items_are_validation_errors(account) -> None:
    iam = account["iam"]
    with pytest.raises(ClientError) as bad:
        iam.get_account_authorization_details(Marker="not-a-marker")
    assert bad.value.response["Error"]["Code"] == "ValidationError"
    with pytest.raises(ClientError) as big:
        iam.get_account_authorization_details(MaxItems=1001)
    assert big.value.response["Error"]["Code"] == "ValidationError"


def _raw_details(account: dict[str, Any]) -> bytes:
    iam = account["iam"]
    body: list[bytes] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        body.append(re.sub(rb"<RequestId>[^<]*</RequestId>", b"", response_dict["body"]))

    iam.meta.events.register("before-parse.iam.GetAccountAuthorizationDetails", keep)
    try:
        iam.get_account_authorization_details()
    finally:
        iam.meta.events.unregister("before-parse.iam.GetAccountAuthorizationDetails", keep)
    return body[0]


def test_policy_documents_are_encoded_as_moto_encodes_them(account, monkeypatch) -> None:
    ours = _raw_details(account)
    assert b"policy/ReadOnlyAccess" in ours and b"<PolicyVersionList>" in ours
    # moto's own models, encoding every document on every call.
    monkeypatch.setattr(gaad, "_policy_view", lambda policy: policy)
    assert _raw_details(account) == ours


def test_a_large_policy_document_is_encoded_once(account, monkeypatch) -> None:
    account["iam"].get_account_authorization_details()
    encoded: list[int] = []
    original = urllib.parse.quote

    def counting(text: Any, *args: Any, **kwargs: Any) -> Any:
        if len(text) > 10_000:  # ReadOnlyAccess, SecurityAudit; not the inline policies
            encoded.append(len(text))
        return original(text, *args, **kwargs)

    monkeypatch.setattr(urllib.parse, "quote", counting)
    details = account["iam"].get_account_authorization_details()
    assert READ_ONLY in {p["Arn"] for p in details["Policies"]}
    assert encoded == []
