"""Workload users' key ids planted where teams paste them: Lambda, SSM, EC2, CodeBuild."""

from __future__ import annotations

import base64
import io
import json
import zipfile

from sandbox.seed_context import Seeding, plant
from sandbox.seed_manifest import SeedManifest

_WARNING = "SANDBOX ONLY: planted for the key scan; the secret is fake"


def plant_aws_keys(seeding: Seeding, manifest: SeedManifest) -> None:
    """Workload users' key ids (with fake secrets) in AWS-side configuration, spread over the
    first two active accounts."""
    active = [a.account_id for a in manifest.accounts if a.status == "ACTIVE"]
    if not seeding.workload_keys or not active:
        return
    first, second = active[0], active[1 % len(active)]
    role_arn = _workload_role(seeding, first)
    _plant_in_lambda(seeding, manifest, first, role_arn)
    _plant_in_ssm(seeding, manifest, first)
    role_arn = role_arn if second == first else _workload_role(seeding, second)
    _plant_in_launch_template(seeding, manifest, second)
    _plant_in_codebuild(seeding, manifest, second, role_arn)


def _workload_role(seeding: Seeding, account_id: str) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "codebuild.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return seeding.member_client(account_id, "iam").create_role(
        RoleName="acme-workload-runner", AssumeRolePolicyDocument=json.dumps(trust)
    )["Role"]["Arn"]


def _where(seeding: Seeding, account_id: str) -> str:
    return f"{account_id} / {seeding.region} /"


def _plant_in_lambda(
    seeding: Seeding, manifest: SeedManifest, account_id: str, role_arn: str
) -> None:
    key = seeding.workload_key(1, account_id)
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as bundle:
        bundle.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    seeding.member_client(account_id, "lambda").create_function(
        FunctionName="acme-report-uploader",
        Runtime="python3.12",
        Role=role_arn,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Description=_WARNING,
        Environment={
            "Variables": {
                "AWS_ACCESS_KEY_ID": key[2],
                "AWS_SECRET_ACCESS_KEY": seeding.fake_secret(),
                "REPORT_BUCKET": "acme-reports",
            }
        },
    )
    plant(
        manifest,
        key,
        "lambda",
        f"{_where(seeding, account_id)} Lambda function acme-report-uploader "
        "(env AWS_ACCESS_KEY_ID)",
    )


def _plant_in_ssm(seeding: Seeding, manifest: SeedManifest, account_id: str) -> None:
    key = seeding.workload_key(2, account_id)
    ssm = seeding.member_client(account_id, "ssm")
    for name, value in (("aws_access_key_id", key[2]), ("region", seeding.region)):
        ssm.put_parameter(
            Name=f"/acme/exporter/{name}", Value=value, Type="String", Description=_WARNING
        )
    plant(
        manifest,
        key,
        "ssm",
        f"{_where(seeding, account_id)} SSM parameter /acme/exporter/aws_access_key_id",
        with_secret=False,
    )


def _plant_in_launch_template(seeding: Seeding, manifest: SeedManifest, account_id: str) -> None:
    key = seeding.workload_key(0, account_id)
    user_data = (
        "#!/bin/bash\n"
        f"# {_WARNING}\n"
        "cat > /etc/acme/aws.env <<'EOF'\n"
        f"AWS_ACCESS_KEY_ID={key[2]}\n"
        f"AWS_SECRET_ACCESS_KEY={seeding.fake_secret()}\n"
        "EOF\n"
    )
    seeding.member_client(account_id, "ec2").create_launch_template(
        LaunchTemplateName="acme-batch-worker",
        LaunchTemplateData={
            "InstanceType": "t3.micro",
            "UserData": base64.b64encode(user_data.encode()).decode(),
        },
    )
    plant(
        manifest,
        key,
        "ec2-launch-template",
        f"{_where(seeding, account_id)} EC2 launch template acme-batch-worker version 1 "
        "(user data line 4)",
    )


def _plant_in_codebuild(
    seeding: Seeding, manifest: SeedManifest, account_id: str, role_arn: str
) -> None:
    key = seeding.workload_key(1, account_id)
    seeding.member_client(account_id, "codebuild").create_project(
        name="acme-nightly-build",
        description=_WARNING,
        source={"type": "S3", "location": "acme-build-sources/app.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
            "environmentVariables": [
                {"name": "AWS_ACCESS_KEY_ID", "value": key[2], "type": "PLAINTEXT"},
                {
                    "name": "AWS_SECRET_ACCESS_KEY",
                    "value": seeding.fake_secret(),
                    "type": "PLAINTEXT",
                },
            ],
        },
        serviceRole=role_arn,
    )
    plant(
        manifest,
        key,
        "codebuild",
        f"{_where(seeding, account_id)} CodeBuild project acme-nightly-build "
        "(env AWS_ACCESS_KEY_ID)",
    )
