"""The cut-over's live reads: a replacement role counts only under ``/iamc/``, as iamc makes it."""

from __future__ import annotations

import json

import boto3
from moto import mock_aws

from domain.workloads import ROLE_PATH
from tasks.workload_use import role_use

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@mock_aws
def test_a_namesake_outside_iamcs_path_is_not_the_replacement_role():
    iam = boto3.client("iam", region_name="us-east-1")
    assert not role_use(iam, "iamc-wl-report").exists
    iam.create_role(RoleName="iamc-wl-report", AssumeRolePolicyDocument=json.dumps(TRUST))
    assert not role_use(iam, "iamc-wl-report").exists  # someone else's, at "/"
    iam.create_role(
        RoleName="iamc-wl-etl", Path=ROLE_PATH, AssumeRolePolicyDocument=json.dumps(TRUST)
    )
    found = role_use(iam, "iamc-wl-etl")
    assert found.exists and found.last_used is None
