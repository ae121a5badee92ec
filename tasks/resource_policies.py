"""Resource policies and KMS grants that name an IAM user, read across the organization.

AWS stores a principal ARN in a resource policy as the user's unique id; when the user is
deleted the policy shows the bare id (``AIDA…``) and a re-created user of the same name does
not regain the access (AWS_FACTS). So a user named in one is not deleted: the reference is
reported with its account, region, resource ARN and statement.

Any in-scope account may name any user (a bucket in account B can grant a user of account A),
in any region it has enabled, so :class:`OrgPolicies` reads every in-scope account in every
enabled region (or the spec's ``[decommission] reference_regions``), once per delete run:
S3 bucket policies (buckets are listed once per account, each policy read in the bucket's
region), KMS key policies and grants (grantee or retiring principal), SQS queue, SNS topic,
Secrets Manager, Lambda function (and alias) and ECR repository policies, and IAM role trust
policies (global). A listing or a policy that can't be read (refused, unreachable, throttled
after botocore's retries) is a gap, and a gap blocks every user: absence of a reference can't
be shown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from domain.retire import PolicyReference
from tasks.aws import error_code, error_message
from tasks.aws import pages as _pages

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "ec2:DescribeRegions",
    "s3:ListAllMyBuckets",
    "s3:GetBucketLocation",
    "s3:GetBucketPolicy",
    "kms:ListKeys",
    "kms:GetKeyPolicy",
    "kms:ListGrants",
    "sqs:ListQueues",
    "sqs:GetQueueAttributes",
    "sns:ListTopics",
    "sns:GetTopicAttributes",
    "iam:ListRoles",
    "secretsmanager:ListSecrets",
    "secretsmanager:GetResourcePolicy",
    "lambda:ListFunctions",
    "lambda:ListAliases",
    "lambda:GetPolicy",
    "ecr:DescribeRepositories",
    "ecr:GetRepositoryPolicy",
)

# Accounts and regions read at once. Each member session's limiter still governs its rates.
DEFAULT_CONCURRENCY = 8

# "No policy" answers: the resource exists and names nobody (or is gone since it was listed).
_NO_POLICY = frozenset(
    {
        "NoSuchBucketPolicy",
        "ResourceNotFoundException",
        "NotFoundException",
        "RepositoryPolicyNotFoundException",
    }
)
# What a call that can't be read raises: AWS refused it or throttled it past botocore's
# retries (ClientError), the endpoint could not be reached (BotoCoreError), moto in-process
# does not implement it (NotImplementedError).
_UNREADABLE = (ClientError, BotoCoreError, NotImplementedError)

# boto3 sessions are not thread-safe; making a client from one is the part we share.
_CLIENT_LOCK = threading.Lock()


def _client(session: boto3.Session, service: str, region: str | None = None) -> Any:
    with _CLIENT_LOCK:
        return session.client(service, region_name=region) if region else session.client(service)


def _reason(err: BaseException) -> str:
    if isinstance(err, ClientError):
        return error_message(err)
    return f"{type(err).__name__}: {err}"


@dataclass(frozen=True)
class ResourcePolicy:
    """One resource's policy document (or a KMS grant, shaped as one statement)."""

    account_id: str
    region: str  # "" for IAM
    resource_type: str
    arn: str
    document: dict[str, Any]


@dataclass
class AccountPolicies:
    """Resource policies read in one account (some regions, or only its global resources),
    and what could not be read, each gap naming account, region, service and resource."""

    account_id: str
    region: str = ""
    policies: list[ResourcePolicy] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def gap(self, region: str, what: str, err: BaseException) -> None:
        where = f"account {self.account_id}" + (f" {region}" if region else "")
        self.gaps.append(f"{what} ({where}): {_reason(err)}")

    def extend(self, other: AccountPolicies) -> None:
        self.policies.extend(other.policies)
        self.gaps.extend(other.gaps)

    def references_to(self, user_arn: str, user_id: str) -> list[PolicyReference]:
        """Statements naming the user by ARN or unique id (Principal, NotPrincipal, Condition,
        a grant's grantee or retiring principal)."""
        return _references(self.policies, {user_arn, user_id})


def _references(policies: Sequence[ResourcePolicy], names: set[str]) -> list[PolicyReference]:
    found = []
    for policy in policies:
        statements = policy.document.get("Statement") or []
        if isinstance(statements, dict):
            statements = [statements]
        for statement in statements:
            if names & set(_strings(statement)):
                found.append(
                    PolicyReference(
                        policy.arn,
                        policy.resource_type,
                        statement,
                        account_id=policy.account_id,
                        region=policy.region,
                    )
                )
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


# A source lists one kind of resource in one region and yields (type, ARN, read), where read()
# returns the policy document (raw) or None. Listing errors end the source as one gap.
Source = Callable[[boto3.Session, str], Iterator[tuple[str, str, Callable[[], Any]]]]


def _kms(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    kms = _client(session, "kms", region)
    for key in _pages(kms, "list_keys", "Keys"):
        key_id, arn = key["KeyId"], key["KeyArn"]
        yield (
            "kms key",
            arn,
            lambda key_id=key_id: kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"],
        )
        # A grant gives its grantee (and retiring principal) use of the key outside the key
        # policy; a deleted user's grant is left behind (KMS developer guide, "Grants in AWS
        # KMS"). Each grant is read as one statement naming only its principals.
        yield "kms grant", arn, lambda key_id=key_id: _grants(kms, key_id)


def _grants(kms: Any, key_id: str) -> dict[str, Any] | None:
    statements = [
        {
            "GrantId": grant.get("GrantId"),
            "Name": grant.get("Name", ""),
            "Operations": grant.get("Operations", []),
            "GranteePrincipal": grant.get("GranteePrincipal", ""),
            "RetiringPrincipal": grant.get("RetiringPrincipal", ""),
        }
        for grant in _pages(kms, "list_grants", "Grants", KeyId=key_id)
    ]
    return {"Statement": statements} if statements else None


def _sqs(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    sqs = _client(session, "sqs", region)
    for url in _pages(sqs, "list_queues", "QueueUrls"):
        yield (
            "sqs queue",
            url,
            lambda url=url: (
                sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
                .get("Attributes", {})
                .get("Policy")
            ),
        )


def _sns(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    sns = _client(session, "sns", region)
    for topic in _pages(sns, "list_topics", "Topics"):
        arn = topic["TopicArn"]
        yield (
            "sns topic",
            arn,
            lambda arn=arn: (
                sns.get_topic_attributes(TopicArn=arn).get("Attributes", {}).get("Policy")
            ),
        )


def _secrets(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    secrets = _client(session, "secretsmanager", region)
    for secret in _pages(secrets, "list_secrets", "SecretList"):
        arn = secret["ARN"]
        yield (
            "secretsmanager secret",
            arn,
            lambda arn=arn: secrets.get_resource_policy(SecretId=arn).get("ResourcePolicy"),
        )


def _lambdas(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    functions = _client(session, "lambda", region)
    for function in _pages(functions, "list_functions", "Functions"):
        arn = function["FunctionArn"]
        yield (
            "lambda function",
            arn,
            lambda arn=arn: functions.get_policy(FunctionName=arn).get("Policy"),
        )
        # An alias has a policy of its own (AddPermission with Qualifier; Lambda developer
        # guide, "Resource-based policies").
        name = function["FunctionName"]
        for alias in _pages(functions, "list_aliases", "Aliases", FunctionName=name):
            alias_arn = alias["AliasArn"]
            yield (
                "lambda function alias",
                alias_arn,
                lambda alias_arn=alias_arn: functions.get_policy(FunctionName=alias_arn).get(
                    "Policy"
                ),
            )


def _ecr(session: boto3.Session, region: str) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    ecr = _client(session, "ecr", region)
    for repository in _pages(ecr, "describe_repositories", "repositories"):
        name, arn = repository["repositoryName"], repository["repositoryArn"]
        yield (
            "ecr repository",
            arn,
            lambda name=name: ecr.get_repository_policy(repositoryName=name).get("policyText"),
        )


REGIONAL_SOURCES: tuple[Source, ...] = (_kms, _sqs, _sns, _secrets, _lambdas, _ecr)


def _read_source(
    found: AccountPolicies, source: Source, session: boto3.Session, region: str
) -> None:
    what = source.__name__.strip("_")
    try:
        for resource_type, arn, read in source(session, region):
            try:
                document = _document(read())
            except _UNREADABLE as err:
                if isinstance(err, ClientError) and error_code(err) in _NO_POLICY:
                    continue
                found.gap(region, f"{resource_type} {arn}", err)
                continue
            if document:
                found.policies.append(
                    ResourcePolicy(found.account_id, region, resource_type, arn, document)
                )
    except _UNREADABLE as err:
        found.gap(region, f"{what}: listing failed", err)


def read_region_policies(session: boto3.Session, account_id: str, region: str) -> AccountPolicies:
    """KMS (policies and grants), SQS, SNS, Secrets Manager, Lambda and ECR policies of one
    account in one region; what can't be read is a gap."""
    found = AccountPolicies(account_id, region)
    for source in REGIONAL_SOURCES:
        _read_source(found, source, session, region)
    return found


def _bucket_region(s3: Any, bucket: dict[str, Any]) -> str:
    # ListBuckets names each bucket's region (BucketRegion) since 2024; otherwise
    # GetBucketLocation does: None means us-east-1 and "EU" is eu-west-1's old name (S3 API
    # reference, GetBucketLocation).
    if bucket.get("BucketRegion"):
        return str(bucket["BucketRegion"])
    location = s3.get_bucket_location(Bucket=bucket["Name"]).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def _read_buckets(found: AccountPolicies, session: boto3.Session) -> None:
    """Every bucket of the account (S3 lists them all from one region), each policy read in
    the bucket's own region."""
    try:
        s3 = _client(session, "s3")
        buckets = list(_pages(s3, "list_buckets", "Buckets"))
    except _UNREADABLE as err:
        found.gap("", "s3 buckets: listing failed", err)
        return
    clients: dict[str, Any] = {}
    for bucket in buckets:
        arn, region = f"arn:aws:s3:::{bucket['Name']}", ""
        try:
            region = _bucket_region(s3, bucket)
            if region not in clients:
                clients[region] = _client(session, "s3", region)
            raw = clients[region].get_bucket_policy(Bucket=bucket["Name"])["Policy"]
        except _UNREADABLE as err:
            if not (isinstance(err, ClientError) and error_code(err) in _NO_POLICY):
                found.gap(region, f"s3 bucket {arn}", err)
            continue
        document = _document(raw)
        if document:
            found.policies.append(
                ResourcePolicy(found.account_id, region, "s3 bucket", arn, document)
            )


def _read_roles(found: AccountPolicies, session: boto3.Session) -> None:
    try:
        for role in _pages(_client(session, "iam"), "list_roles", "Roles"):
            document = _document(role.get("AssumeRolePolicyDocument"))
            if document:
                found.policies.append(
                    ResourcePolicy(
                        found.account_id, "", "iam role trust policy", role["Arn"], document
                    )
                )
    except _UNREADABLE as err:
        found.gap("", "iam roles: listing failed", err)


def read_global_policies(session: boto3.Session, account_id: str) -> AccountPolicies:
    """An account's IAM role trust policies and S3 bucket policies (every bucket, whatever
    its region); what can't be read is a gap."""
    found = AccountPolicies(account_id)
    _read_roles(found, session)
    _read_buckets(found, session)
    return found


def read_account_policies(session: boto3.Session, account_id: str, region: str) -> AccountPolicies:
    """One account's global resources and its resources in one region.

    A listing or a policy that can't be read becomes a gap with AWS's reason.
    """
    found = read_global_policies(session, account_id)
    found.region = region
    found.extend(read_region_policies(session, account_id, region))
    return found


def enabled_regions(session: boto3.Session) -> list[str]:
    """The regions enabled in the session's account (opted in, or needing no opt-in).

    DescribeRegions has no pagination: one answer holds every region (EC2 API reference).
    """
    ec2 = _client(session, "ec2", session.region_name or "us-east-1")
    regions = ec2.describe_regions(AllRegions=False)["Regions"]
    return sorted(r["RegionName"] for r in regions)


class OrgPolicies:
    """Every in-scope account's resource policies in every enabled region, read once, on the
    first question (thread-safe: the other users' checks wait for that one read).

    Args:
        accounts: The in-scope account ids, or a function giving them (called on first read).
        member: The member session factory (``ExecutionContext.member``).
        regions: Read only these regions (of those each account has enabled); empty: all.
        concurrency: Accounts and regions read at once.
    """

    def __init__(
        self,
        accounts: Sequence[str] | Callable[[], Sequence[str]],
        member: Callable[[str], boto3.Session],
        regions: Sequence[str] = (),
        concurrency: int = DEFAULT_CONCURRENCY,
    ):
        self._accounts = accounts
        self._member = member
        self._regions = tuple(regions)
        self._concurrency = concurrency
        self._lock = threading.Lock()
        self._read: list[AccountPolicies] | None = None
        self.seconds = 0.0

    def _parts(self) -> list[AccountPolicies]:
        with self._lock:
            if self._read is None:
                started = time.perf_counter()
                accounts = self._accounts() if callable(self._accounts) else self._accounts
                self._read = self._read_all(sorted(set(accounts)))
                self.seconds = time.perf_counter() - started
                log.info(
                    "resource policies of %s accounts read in %.1f s: %s policies, %s gaps",
                    len(set(accounts)),
                    self.seconds,
                    sum(len(p.policies) for p in self._read),
                    sum(len(p.gaps) for p in self._read),
                )
            return self._read

    def _regions_of(self, account_id: str) -> tuple[list[str], AccountPolicies]:
        found = AccountPolicies(account_id)
        try:
            enabled = enabled_regions(self._member(account_id))
        except _UNREADABLE as err:
            found.gap("", "enabled regions (so no regional resource)", err)
            return [], found
        if self._regions:
            enabled = [r for r in enabled if r in self._regions]
        return enabled, found

    def _read_all(self, accounts: list[str]) -> list[AccountPolicies]:
        with ThreadPoolExecutor(
            max_workers=self._concurrency, thread_name_prefix="iamc-policies"
        ) as pool:
            regions = list(pool.map(self._regions_of, accounts))
            jobs = [
                pool.submit(read_global_policies, self._member(account_id), account_id)
                for account_id in accounts
            ]
            for account_id, (names, _) in zip(accounts, regions, strict=True):
                jobs += [
                    pool.submit(read_region_policies, self._member(account_id), account_id, region)
                    for region in names
                ]
            return [found for _, found in regions] + [job.result() for job in jobs]

    @property
    def gaps(self) -> list[str]:
        """What could not be read anywhere (each blocks every user's deletion)."""
        return [gap for part in self._parts() for gap in part.gaps]

    def references_to(self, user_arn: str, user_id: str) -> list[PolicyReference]:
        """References to the user in any in-scope account and region."""
        names = {user_arn, user_id}
        return [ref for part in self._parts() for ref in _references(part.policies, names)]
