"""AWS-side key scan of one account (in-process moto): every source, gaps, no secret kept."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import logging
import zipfile
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber

import tasks.aws_config_scan as aws_config_scan
from domain.key_findings import ScanResult
from scanner.key_detection import KeyDetector
from tasks.aws_config_scan import READ_PERMISSIONS, SOURCE_PERMISSIONS, scan_account

ACCOUNT = "123456789012"
REGION = "us-east-1"
LAMBDA_KEY = "AKIAQ3EGRDZ5V7WKTJNM"
ECS_KEY = "AKIAZ7YQ5RMWQ2XKD3VB"
TEMPLATE_KEY = "AKIAR5TW3NQX6MZJ2PLK"
INSTANCE_KEY = "AKIAM4KQ7ZXC2VBN6HJW"
SSM_KEY = "AKIAW2ER5TY7UI3OPLKJ"
SECURE_KEY = "AKIAH6GF4DS2AQ7WE3RT"
STACK_KEY = "AKIAY5TR3EW7QZ2XC4VB"
BUILD_KEY = "AKIAP3OI6UY2TR7EW4QA"
HIDDEN_BUILD_KEY = "AKIAT6YU2IO7PA3SD4FG"
SECRET = "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"


def _lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.fixture
def planted(aws: None) -> boto3.Session:
    """One account with a key in every source (and decoys that must not count)."""
    session = boto3.Session(region_name=REGION)
    role = session.client("iam").create_role(
        RoleName="runner", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    session.client("lambda").create_function(
        FunctionName="uploader",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": _lambda_zip()},
        Environment={
            "Variables": {
                "AWS_ACCESS_KEY_ID": LAMBDA_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET,
                "DOCS_EXAMPLE": "AKIAIOSFODNN7EXAMPLE",
            }
        },
    )
    session.client("ecs").register_task_definition(
        family="worker",
        containerDefinitions=[
            {
                "name": "app",
                "image": "app:1",
                "memory": 128,
                "environment": [{"name": "AWS_ACCESS_KEY_ID", "value": ECS_KEY}],
            }
        ],
    )
    ec2 = session.client("ec2")
    user_data = f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={TEMPLATE_KEY}\nexport S={SECRET}\n"
    ec2.create_launch_template(
        LaunchTemplateName="batch",
        LaunchTemplateData={"UserData": base64.b64encode(user_data.encode()).decode()},
    )
    # Instance user data compressed with gzip, as cloud-init accepts it.
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        UserData=gzip.compress(f"#cloud-config\nkey: {INSTANCE_KEY}\n".encode()),
    )
    ssm = session.client("ssm")
    ssm.put_parameter(Name="/app/aws_access_key_id", Value=SSM_KEY, Type="String")
    ssm.put_parameter(Name="/app/list", Value=f"a,{SSM_KEY}", Type="StringList")
    ssm.put_parameter(Name="/app/secure", Value=SECURE_KEY, Type="SecureString")
    session.client("cloudformation").create_stack(
        StackName="app",
        TemplateBody=json.dumps(
            {
                "Parameters": {"Key": {"Type": "String"}},
                "Resources": {"Q": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"Baked": {"Value": STACK_KEY}},
            }
        ),
        Parameters=[{"ParameterKey": "Key", "ParameterValue": STACK_KEY}],
    )
    session.client("codebuild").create_project(
        name="nightly",
        source={"type": "S3", "location": "bucket/src.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": [
                {"name": "AWS_ACCESS_KEY_ID", "value": BUILD_KEY, "type": "PLAINTEXT"},
                {"name": "FROM_SSM", "value": HIDDEN_BUILD_KEY, "type": "PARAMETER_STORE"},
            ],
        },
        serviceRole=role,
    )
    return session


def _where(result: ScanResult) -> set[tuple[str | None, str, str, bool]]:
    return {(h.key_id, h.source, h.location, h.secret_found) for h in result.hits}


def test_every_source_finds_its_planted_key(planted: boto3.Session) -> None:
    result = scan_account(planted, ACCOUNT)
    prefix = f"{ACCOUNT} / {REGION} /"
    instance_id = planted.client("ec2").describe_instances()["Reservations"][0]["Instances"][0][
        "InstanceId"
    ]
    assert _where(result) == {
        (LAMBDA_KEY, "lambda", f"{prefix} Lambda function uploader (env AWS_ACCESS_KEY_ID)", True),
        (
            ECS_KEY,
            "ecs",
            f"{prefix} ECS task definition worker:1 container app (env AWS_ACCESS_KEY_ID)",
            False,
        ),
        (
            TEMPLATE_KEY,
            "ec2-launch-template",
            f"{prefix} EC2 launch template batch version 1 (user data line 2)",
            True,
        ),
        (
            INSTANCE_KEY,
            "ec2-instance",
            f"{prefix} EC2 instance {instance_id} (user data line 2)",
            False,
        ),
        (SSM_KEY, "ssm", f"{prefix} SSM parameter /app/aws_access_key_id", False),
        (SSM_KEY, "ssm", f"{prefix} SSM parameter /app/list", False),
        (STACK_KEY, "cloudformation", f"{prefix} CloudFormation stack app (parameter Key)", False),
        (
            STACK_KEY,
            "cloudformation",
            next(h.location for h in result.hits if "template line" in h.location),
            False,
        ),
        (
            BUILD_KEY,
            "codebuild",
            f"{prefix} CodeBuild project nightly (env AWS_ACCESS_KEY_ID)",
            False,
        ),
    }
    assert all(h.account_id == ACCOUNT and h.region == REGION for h in result.hits)
    assert [(i.key_id, i.reason) for i in result.ignored] == [
        ("AKIAIOSFODNN7EXAMPLE", "aws-documentation-example")
    ]
    assert result.gaps == []
    # SecureString values and non-PLAINTEXT CodeBuild variables are never read as keys.
    assert SECURE_KEY not in result.key_ids() and HIDDEN_BUILD_KEY not in result.key_ids()


def test_calls_are_counted_per_operation(planted: boto3.Session) -> None:
    result = scan_account(planted, ACCOUNT)
    calls = result.stats.calls
    assert calls["lambda:ListFunctions"] == 1
    assert calls["ecs:DescribeTaskDefinition"] == 1
    assert calls["ssm:GetParameters"] == 1  # two names, one batch
    assert calls["ec2:DescribeInstanceAttribute"] == 1
    declared = {a.lower() for a in READ_PERMISSIONS}
    for operation in calls:
        service, name = operation.split(":")
        assert f"{service}:{name}".lower() in declared, operation


def test_no_secret_or_whole_key_id_in_records_or_logs(
    planted: boto3.Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tasks")
    result = scan_account(planted, ACCOUNT)
    records = [*result.hits, *result.ignored, *result.gaps]
    for record in records:
        fields = " ".join(map(str, dataclasses.asdict(record).values()))
        assert SECRET not in fields + repr(record) + str(record)
    for hit in result.hits:
        assert hit.key_id not in repr(hit) + str(hit)
    assert SECRET not in caplog.text
    assert LAMBDA_KEY not in caplog.text


def _answer_501(service: str):
    """A before-send hook: the service answers as the sandbox does for what moto lacks."""

    def before_send(request: Any, **_: Any) -> AWSResponse | None:
        if f"{service}." not in request.url:
            return None
        body = b'{"__type": "NotImplemented", "message": "not implemented"}'
        return AWSResponse(request.url, 501, {"x-amzn-ErrorType": "NotImplemented"}, _Raw(body))

    return before_send


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_: Any):
        yield self._body


def test_not_implemented_endpoint_is_a_gap(planted: boto3.Session) -> None:
    planted.events.register("before-send.ecs", _answer_501("ecs"))
    result = scan_account(planted, ACCOUNT)
    assert [(g.source, g.operation, g.reason) for g in result.gaps] == [
        ("ecs", "ListTaskDefinitions", "not implemented by this endpoint")
    ]
    assert LAMBDA_KEY in result.key_ids() and ECS_KEY not in result.key_ids()


def test_moto_not_implemented_and_access_denied_are_gaps(
    planted: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*_: Any) -> Any:
        raise NotImplementedError("The describe_stacks action has not been implemented")

    def denied(*_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListProjects"
        )
        yield  # a generator, as the sources are

    monkeypatch.setitem(aws_config_scan.SOURCES, "cloudformation", missing)
    monkeypatch.setitem(aws_config_scan.SOURCES, "codebuild", denied)
    result = scan_account(planted, ACCOUNT)
    assert sorted((g.source, g.operation, g.reason) for g in result.gaps) == [
        (
            "cloudformation",
            "?",
            "not implemented: The describe_stacks action has not been implemented",
        ),
        ("codebuild", "ListProjects", "AccessDeniedException: no"),
    ]
    assert {LAMBDA_KEY, SSM_KEY} <= result.key_ids()


def test_expired_credentials_fail_the_account(
    planted: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def expired(*_: Any) -> Any:
        raise ClientError({"Error": {"Code": "ExpiredToken", "Message": "old"}}, "ListFunctions")
        yield

    monkeypatch.setitem(aws_config_scan.SOURCES, "lambda", expired)
    with pytest.raises(ClientError):
        scan_account(planted, ACCOUNT)


class _StubbedSession:
    def __init__(self, client: Any):
        self._client = client

    def client(self, *_: Any, **__: Any) -> Any:
        return self._client


def test_noecho_parameters_are_skipped() -> None:
    # moto shows NoEcho values in clear; AWS shows ****: stub what AWS answers.
    client = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "s",
                    "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
                    "CreationTime": "2024-01-01T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Parameters": [
                        {"ParameterKey": "Hidden", "ParameterValue": "****"},
                        {"ParameterKey": "Visible", "ParameterValue": STACK_KEY},
                    ],
                }
            ]
        },
    )
    stubber.add_response("get_template", {"TemplateBody": "Resources: {}\n"})
    with stubber:
        found = list(
            aws_config_scan.cloudformation_stacks(
                _StubbedSession(client),  # type: ignore[arg-type]
                ACCOUNT,
                KeyDetector(b"s"),
                REGION,
            )
        )
    assert [(f.key_id, f.location.rsplit(" ", 2)[-2:]) for f in found] == [
        (STACK_KEY, ["(parameter", "Visible)"])
    ]


def test_every_source_declares_its_permissions() -> None:
    assert set(SOURCE_PERMISSIONS) == set(aws_config_scan.SOURCES)
    assert set(READ_PERMISSIONS) == {a for acts in SOURCE_PERMISSIONS.values() for a in acts}
    assert not any(a.startswith("ssm:GetParametersByPath") for a in READ_PERMISSIONS)
