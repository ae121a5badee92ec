"""The inventory's role figures, and the provision stage's live check of referenced policies."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from domain.policy_documents import policy_fingerprint
from tasks.iam_account import read_role_quota
from tasks.permission_sets import missing_customer_policies

ACCOUNT = "123456789012"
PLANNED = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}


def test_role_figures_come_from_the_account_summary() -> None:
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        for n in range(3):
            iam.create_role(RoleName=f"r{n}", AssumeRolePolicyDocument="{}")
        assert read_role_quota(iam, ACCOUNT, lambda _name, fn: fn()) == (3, 1000)
        # An endpoint without the call: not read, not guessed.
        assert read_role_quota(iam, ACCOUNT, lambda _name, _fn: None) == (None, None)


def test_a_referenced_policy_must_still_have_the_planned_document() -> None:
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        iam = session.client("iam")
        arn = iam.create_policy(
            PolicyName="app-read", Path="/team/", PolicyDocument=json.dumps(PLANNED)
        )["Policy"]["Arn"]
        reference = {"name": "app-read", "path": "/team/"}
        planned = {**reference, "document_hash": policy_fingerprint(PLANNED)}
        assert missing_customer_policies(session, ACCOUNT, [planned]) == []
        # Edited since the plan: a new default version says something else.
        edited = {**PLANNED, "Statement": [{**PLANNED["Statement"][0], "Action": "s3:*"}]}
        iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=json.dumps(edited), SetAsDefault=True
        )
        [problem] = missing_customer_policies(session, ACCOUNT, [planned])
        assert problem == f"{arn} has another document than planned (default version v2)"
        # A reference planned without a document (a boundary) only has to exist.
        assert missing_customer_policies(session, ACCOUNT, [reference]) == []
        absent = {"name": "gone", "path": "/"}
        assert missing_customer_policies(session, ACCOUNT, [absent]) == [
            f"arn:aws:iam::{ACCOUNT}:policy/gone does not exist"
        ]
