"""Resource policies naming a user, read from every kind of resource (moto in-process)."""

from __future__ import annotations

import io
import json
import zipfile

import boto3

from tasks.resource_policies import read_account_policies

ACCOUNT = "123456789012"
USER_ARN = f"arn:aws:iam::{ACCOUNT}:user/people/jane"


def _doc(principal: dict, sid: str, resource: str = "*", **extra) -> str:
    statement = {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": "*"}
    statement["Resource"] = resource
    statement.update(extra)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 1\n")
    return buffer.getvalue()


def test_every_kind_of_resource_policy_is_read_and_a_reference_found(aws):
    session = boto3.Session(region_name="us-east-1")
    iam = session.client("iam")
    user = iam.create_user(UserName="jane", Path="/people/")["User"]
    iam.create_user(UserName="janet")
    names = {"AWS": USER_ARN}
    role = iam.create_role(
        RoleName="jane-can-assume",
        AssumeRolePolicyDocument=_doc(names, "Trust"),
    )["Role"]
    iam.create_role(
        RoleName="lambda-role",
        AssumeRolePolicyDocument=_doc({"Service": "lambda.amazonaws.com"}, "Lambda"),
    )
    kms = session.client("kms")
    key = kms.create_key(Policy=_doc(names, "KeyUse"))["KeyMetadata"]
    sqs = session.client("sqs")
    queue = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": _doc(names, "Send")})
    sns = session.client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    sns.set_topic_attributes(
        TopicArn=topic, AttributeName="Policy", AttributeValue=_doc(names, "Publish")
    )
    secrets = session.client("secretsmanager")
    secret = secrets.create_secret(Name="db", SecretString="x")["ARN"]
    # Named by unique id inside a condition, not as a principal.
    secrets.put_resource_policy(
        SecretId=secret,
        ResourcePolicy=_doc(
            {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "ById",
            Condition={"StringEquals": {"aws:userid": user["UserId"]}},
        ),
    )
    functions = session.client("lambda")
    function = functions.create_function(
        FunctionName="report",
        Runtime="python3.12",
        Role=f"arn:aws:iam::{ACCOUNT}:role/lambda-role",
        Handler="index.handler",
        Code={"ZipFile": _zip()},
    )["FunctionArn"]
    functions.add_permission(
        FunctionName="report",
        StatementId="JaneInvokes",
        Action="lambda:InvokeFunction",
        Principal=USER_ARN,
    )

    policies = read_account_policies(session, ACCOUNT, "us-east-1")
    found = policies.references_to(user["Arn"], user["UserId"])

    assert policies.gaps == []
    assert sorted((r.resource_type, r.resource_arn) for r in found) == sorted(
        [
            ("iam role trust policy", role["Arn"]),
            ("kms key", key["Arn"]),
            ("sqs queue", queue),
            ("sns topic", topic),
            ("secretsmanager secret", secret),
            ("lambda function", function),
        ]
    )
    # A user whose name starts the same is not named.
    janet = iam.get_user(UserName="janet")["User"]
    assert policies.references_to(janet["Arn"], janet["UserId"]) == []
