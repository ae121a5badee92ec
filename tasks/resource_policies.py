"""Resource policies of a member account that name an IAM user (read once per account and run).

AWS stores a principal ARN in a resource policy as the user's unique id; when the user is
deleted the policy shows the bare id (``AIDA…``) and a re-created user of the same name does
not regain the access (AWS_FACTS). So a user named in one is not deleted: the reference is
reported with the resource ARN and the statement. Read: S3 bucket policies, KMS key policies,
SQS queue and SNS topic policies, IAM role trust policies, Secrets Manager resource policies,
Lambda function policies. A policy that can't be read is a gap, and a gap blocks too: absence
of a reference can't be shown.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from domain.retire import PolicyReference
from tasks.aws import error_message
from tasks.aws import pages as _pages

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "s3:ListAllMyBuckets",
    "s3:GetBucketPolicy",
    "kms:ListKeys",
    "kms:GetKeyPolicy",
    "sqs:ListQueues",
    "sqs:GetQueueAttributes",
    "sns:ListTopics",
    "sns:GetTopicAttributes",
    "iam:ListRoles",
    "secretsmanager:ListSecrets",
    "secretsmanager:GetResourcePolicy",
    "lambda:ListFunctions",
    "lambda:GetPolicy",
)

# "No policy" answers: the resource exists and names nobody.
_NO_POLICY = frozenset({"NoSuchBucketPolicy", "ResourceNotFoundException", "NotFoundException"})


@dataclass
class AccountPolicies:
    """Every resource policy read in one account and region, and what could not be read."""

    account_id: str
    region: str
    policies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def references_to(self, user_arn: str, user_id: str) -> list[PolicyReference]:
        """Statements naming the user by ARN or unique id (Principal, NotPrincipal, Condition)."""
        names = {user_arn, user_id}
        found = []
        for resource_type, arn, document in self.policies:
            statements = document.get("Statement") or []
            if isinstance(statements, dict):
                statements = [statements]
            for statement in statements:
                if names & set(_strings(statement)):
                    found.append(PolicyReference(arn, resource_type, statement))
        return found


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _document(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return json.loads(urllib.parse.unquote(raw))


def _s3(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    s3 = session.client("s3", region_name=region)
    for bucket in _pages(s3, "list_buckets", "Buckets"):
        name = bucket["Name"]
        yield (
            "s3 bucket",
            f"arn:aws:s3:::{name}",
            lambda s3=s3, name=name: s3.get_bucket_policy(Bucket=name)["Policy"],
        )


def _kms(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    kms = session.client("kms", region_name=region)
    for key in _pages(kms, "list_keys", "Keys"):
        yield (
            "kms key",
            key["KeyArn"],
            lambda kms=kms, key=key: kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")[
                "Policy"
            ],
        )


def _sqs(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    sqs = session.client("sqs", region_name=region)
    for url in _pages(sqs, "list_queues", "QueueUrls"):
        yield (
            "sqs queue",
            url,
            lambda sqs=sqs, url=url: (
                sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
                .get("Attributes", {})
                .get("Policy")
            ),
        )


def _sns(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    sns = session.client("sns", region_name=region)
    for topic in _pages(sns, "list_topics", "Topics"):
        arn = topic["TopicArn"]
        yield (
            "sns topic",
            arn,
            lambda sns=sns, arn=arn: (
                sns.get_topic_attributes(TopicArn=arn).get("Attributes", {}).get("Policy")
            ),
        )


def _roles(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    iam = session.client("iam")
    for role in _pages(iam, "list_roles", "Roles"):
        document = role.get("AssumeRolePolicyDocument")
        yield "iam role trust policy", role["Arn"], lambda document=document: document


def _secrets(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    secrets = session.client("secretsmanager", region_name=region)
    for secret in _pages(secrets, "list_secrets", "SecretList"):
        arn = secret["ARN"]
        yield (
            "secretsmanager secret",
            arn,
            lambda secrets=secrets, arn=arn: secrets.get_resource_policy(SecretId=arn).get(
                "ResourcePolicy"
            ),
        )


def _lambdas(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Any]]:
    functions = session.client("lambda", region_name=region)
    for function in _pages(functions, "list_functions", "Functions"):
        arn = function["FunctionArn"]
        yield (
            "lambda function",
            arn,
            lambda functions=functions, arn=arn: functions.get_policy(FunctionName=arn).get(
                "Policy"
            ),
        )


SOURCES: tuple[Callable[[boto3.Session, str], Iterator[tuple[str, str, Any]]], ...] = (
    _s3,
    _kms,
    _sqs,
    _sns,
    _roles,
    _secrets,
    _lambdas,
)


def read_account_policies(session: boto3.Session, account_id: str, region: str) -> AccountPolicies:
    """Every resource policy of the account in the region (IAM roles: account-wide).

    A listing or a policy that can't be read becomes a gap with AWS's reason.
    """
    found = AccountPolicies(account_id, region)
    for source in SOURCES:
        what = source.__name__.strip("_")
        try:
            for resource_type, arn, read in source(session, region):
                try:
                    document = _document(read())
                except ClientError as err:
                    if err.response.get("Error", {}).get("Code") in _NO_POLICY:
                        continue
                    found.gaps.append(f"{resource_type} {arn}: {error_message(err)}")
                    continue
                if document:
                    found.policies.append((resource_type, arn, document))
        except ClientError as err:
            found.gaps.append(f"{what}: listing failed: {error_message(err)}")
        except (BotoCoreError, NotImplementedError) as err:
            found.gaps.append(f"{what}: {err}")
    log.info(
        "account %s: %s resource policies read, %s gaps",
        account_id,
        len(found.policies),
        len(found.gaps),
    )
    return found
