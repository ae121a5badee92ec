"""Resource policies naming a user, read from every kind of resource (moto in-process)."""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.exceptions import ClientError

from tasks.resource_policies import OrgPolicies, read_account_policies

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


# -- the organization: every in-scope account, every region read ------------------------------

OTHER = "222222222222"
REGIONS = ("us-east-1", "eu-west-1")


def _member_sessions() -> Callable[[str], boto3.Session]:
    """Sessions in moto's accounts by AssumeRole (moto serves each credential's account)."""
    sts = boto3.client("sts", region_name="us-east-1")

    def member(account_id: str) -> boto3.Session:
        creds = sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
            RoleSessionName="test",
        )["Credentials"]
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name="us-east-1",
        )

    return functools.cache(member)


def test_references_are_found_in_other_accounts_regions_and_kms_grants(aws):
    member = _member_sessions()
    home, other = member(ACCOUNT), member(OTHER)
    user = home.client("iam").create_user(UserName="jane", Path="/people/")["User"]
    # A grant naming jane only as the principal who may retire it, in the other account.
    kms = other.client("kms", region_name="eu-west-1")
    key = kms.create_key()["KeyMetadata"]
    grant = kms.create_grant(
        KeyId=key["KeyId"],
        GranteePrincipal=f"arn:aws:iam::{OTHER}:role/app",
        RetiringPrincipal=USER_ARN,
        Operations=["Decrypt"],
    )["GrantId"]
    ecr = other.client("ecr", region_name="us-east-1")
    repository = ecr.create_repository(repositoryName="app")["repository"]
    ecr.set_repository_policy(repositoryName="app", policyText=_doc({"AWS": USER_ARN}, "Pull"))
    org = OrgPolicies([ACCOUNT, OTHER], member, regions=REGIONS)
    found = org.references_to(user["Arn"], user["UserId"])

    assert org.gaps == []
    assert sorted((r.resource_type, r.resource_arn, r.account_id, r.region) for r in found) == [
        ("ecr repository", repository["repositoryArn"], OTHER, "us-east-1"),
        ("kms grant", key["Arn"], OTHER, "eu-west-1"),
    ]
    described = {r.resource_type: r.describe() for r in found}
    assert (
        described["kms grant"]
        == f"kms grant {key['Arn']} (grant {grant}) in account {OTHER} (eu-west-1)"
    )


def test_the_organization_is_read_once_however_many_users_ask_at_once(aws):
    member = _member_sessions()
    asked: list[int] = []

    def accounts() -> list[str]:
        asked.append(1)
        return [ACCOUNT, OTHER]

    org = OrgPolicies(accounts, member, regions=("us-east-1",))
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: org.references_to(f"arn:{n}", f"AIDA{n}"), range(16)))

    assert asked == [1] and answers == [[]] * 16
    # Read once: a policy written afterwards is not seen by this run's object.
    member(OTHER).client("sqs").create_queue(
        QueueName="late", Attributes={"Policy": _doc({"AWS": USER_ARN}, "Late")}
    )
    assert org.references_to(USER_ARN, "AIDAJANE") == [] and asked == [1]


def test_a_call_refused_for_one_resource_is_a_gap_naming_it_and_the_rest_is_read(aws):
    member = _member_sessions()
    other = member(OTHER)
    kms = other.client("kms", region_name="eu-west-1")
    key = kms.create_key(Policy=_doc({"AWS": USER_ARN}, "KeyUse"))["KeyMetadata"]

    def deny_list_grants(**_: object) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "ListGrants"
        )

    other._session.register("before-call.kms.ListGrants", deny_list_grants)
    org = OrgPolicies([ACCOUNT, OTHER], member, regions=REGIONS)

    assert org.gaps == [
        f"kms grant {key['Arn']} (account {OTHER} eu-west-1): AccessDeniedException: not allowed"
    ]
    found = org.references_to(USER_ARN, "AIDAJANE")
    assert [(r.resource_type, r.resource_arn) for r in found] == [("kms key", key["Arn"])]
