"""Inventory of one account's IAM users, with the fewest calls that give the full picture.

Two bulk reads do most of the work: GetAccountAuthorizationDetails (users, groups, policies with
documents, memberships, boundaries, tags) and the credential report (password, MFA and key
activity). Per user we only ask what those two don't give.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.handlers import json_decode_policies
from tenacity import retry, retry_if_result, stop_after_delay, wait_exponential

from domain.classification import ClassificationRules, classify_user
from domain.credentials import CREDENTIAL_KINDS
from domain.records import (
    Account,
    AccountInventory,
    AttachedPolicy,
    Group,
    InlinePolicy,
    ManagedPolicy,
    User,
)
from tasks.aws import translate_errors
from tasks.iam_account import read_role_quota
from tasks.iam_user_credentials import (
    READERS,
    Gaps,
    UserReads,
    read_all_service_credentials,
    utc,
)

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetAccountAuthorizationDetails",
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListMFADevices",
    "iam:ListSSHPublicKeys",
    "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials",
)


def _document(raw: Any) -> dict[str, Any]:
    """Policy documents arrive URL-encoded JSON (API reference) unless botocore decoded them."""
    if isinstance(raw, dict):
        return raw
    return json.loads(_unquoted(raw))


@functools.lru_cache(maxsize=128)
def _unquoted(raw: str) -> str:
    # Percent-decoding runs in Python, milliseconds for a large AWS-managed policy, and every
    # account whose users reach the same AWS-managed policy sends the same document.
    return urllib.parse.unquote(raw)


def inventory_client(session: boto3.Session) -> Any:
    """An IAM client whose responses keep policy documents URL-encoded, as IAM sends them.

    botocore decodes every policy document of a response (``json_decode_policies``): in
    GetAccountAuthorizationDetails that is every version of every managed policy, though the
    inventory keeps only the default version of the policies its users reach. Documents are
    decoded where they are kept (:func:`_document`), to the same JSON.
    """
    iam = session.client("iam")
    iam.meta.events.unregister("after-call.iam", json_decode_policies)
    return iam


def read_authorization_details(
    iam,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Users, groups and managed policies of the account, paginated; roles are not needed."""
    users: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    policies: dict[str, dict[str, Any]] = {}
    paginator = iam.get_paginator("get_account_authorization_details")
    for page in paginator.paginate(
        Filter=["User", "Group", "LocalManagedPolicy", "AWSManagedPolicy"]
    ):
        users.extend(page.get("UserDetailList", []))
        groups.extend(page.get("GroupDetailList", []))
        for policy in page.get("Policies", []):
            policies[policy["Arn"]] = policy
    return users, groups, policies


@retry(
    retry=retry_if_result(lambda state: state != "COMPLETE"),
    wait=wait_exponential(multiplier=0.1, max=5),
    stop=stop_after_delay(300),
    reraise=True,
)
def _generate_credential_report(iam) -> str:
    # Generate returns STARTED/INPROGRESS until the report is ready; AWS reuses a report
    # younger than four hours (IAM user guide, "Getting credential reports"). Polls at 0.1,
    # 0.2, 0.4 ... s: a reused report answers COMPLETE at once, a new one takes seconds.
    return iam.generate_credential_report()["State"]


def start_credential_report(iam) -> str:
    """Ask IAM to start generating the report (one call, no waiting); returns its state."""
    return iam.generate_credential_report()["State"]


def read_credential_report(iam, state: str | None = None) -> dict[str, dict[str, str]]:
    """The credential report as {user name: row}.

    Args:
        iam: An IAM client of the account.
        state: What :func:`start_credential_report` answered, when it was called earlier
            (the report is generated while other reads go on); None asks now.
    """
    if state != "COMPLETE":
        _generate_credential_report(iam)
    content = iam.get_credential_report()["Content"]
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    return {row["user"]: row for row in csv.DictReader(io.StringIO(text))}


def _attached(items: list[dict[str, Any]]) -> list[AttachedPolicy]:
    return [AttachedPolicy(arn=p["PolicyArn"], name=p["PolicyName"]) for p in items]


def _inline(items: list[dict[str, Any]]) -> list[InlinePolicy]:
    return [
        InlinePolicy(name=p["PolicyName"], document=_document(p["PolicyDocument"])) for p in items
    ]


def _managed_policy(raw: dict[str, Any]) -> ManagedPolicy:
    default = raw.get("DefaultVersionId")
    document = None
    for version in raw.get("PolicyVersionList", []):
        if version.get("IsDefaultVersion") or version.get("VersionId") == default:
            document = _document(version["Document"])
            break
    return ManagedPolicy(
        arn=raw["Arn"],
        # moto omits PolicyName here; the name is the ARN's last segment anyway.
        name=raw.get("PolicyName") or raw["Arn"].rsplit("/", 1)[-1],
        path=raw.get("Path", "/"),
        aws_managed=raw["Arn"].startswith("arn:aws:iam::aws:policy/")
        or ":iam::aws:policy/" in raw["Arn"],
        default_version_id=default,
        document=document,
    )


def _user_from_details(raw: dict[str, Any]) -> User:
    boundary = raw.get("PermissionsBoundary") or {}
    user = User(
        name=raw["UserName"],
        user_id=raw["UserId"],
        arn=raw["Arn"],
        path=raw.get("Path", "/"),
        created=utc(raw.get("CreateDate")),
        attached_policies=_attached(raw.get("AttachedManagedPolicies", [])),
        inline_policies=_inline(raw.get("UserPolicyList", [])),
        groups=sorted(raw.get("GroupList", [])),
        permissions_boundary_arn=boundary.get("PermissionsBoundaryArn"),
        tags={t["Key"]: t["Value"] for t in raw.get("Tags", [])},
    )
    return user


def _groups_from_details(raw_groups: list[dict[str, Any]]) -> list[Group]:
    return [
        Group(
            name=raw["GroupName"],
            group_id=raw["GroupId"],
            arn=raw["Arn"],
            path=raw.get("Path", "/"),
            attached_policies=_attached(raw.get("AttachedManagedPolicies", [])),
            inline_policies=_inline(raw.get("GroupPolicyList", [])),
        )
        for raw in sorted(raw_groups, key=lambda g: g["GroupName"])
    ]


def read_account_access(session: boto3.Session, account_id: str) -> tuple[list[User], list[Group]]:
    """The account's IAM users and groups with their policies, live, from one bulk read.

    What apply compares with the plan before it changes an account: GetAccountAuthorizationDetails
    alone (paginated) gives every user's policies, groups, boundary and tags; credentials are
    not read here.

    Raises:
        AwsAccessError: credentials refused while reading the account.
    """
    with translate_errors(account_id=account_id, operation="iam:GetAccountAuthorizationDetails"):
        raw_users, raw_groups, _ = read_authorization_details(session.client("iam"))
    users = [_user_from_details(raw) for raw in sorted(raw_users, key=lambda u: u["UserName"])]
    return users, _groups_from_details(raw_groups)


def _bulk_reads(
    iam, account_id: str, report_state: str, gaps: Gaps, pool: ThreadPoolExecutor | None
) -> tuple[
    list[dict[str, Any]],
    list[dict[str, Any]],
    dict[str, dict[str, Any]],
    dict[str, dict[str, str]],
    dict[str, list[dict[str, Any]]] | None,
]:
    """The account's authorization details, credential report and service credentials.

    With a pool the three go at once (the report's wait overlaps the others); a failure is
    raised in the order a serial read would meet it: details, report, service credentials.
    """

    def details() -> tuple:
        with translate_errors(
            account_id=account_id, operation="iam:GetAccountAuthorizationDetails"
        ):
            return read_authorization_details(iam)

    def credential_report() -> dict[str, dict[str, str]]:
        with translate_errors(account_id=account_id, operation="iam:GetCredentialReport"):
            return read_credential_report(iam, report_state)

    def service_credentials() -> dict[str, list[dict[str, Any]]] | None:
        with translate_errors(
            account_id=account_id, operation="iam:ListServiceSpecificCredentials"
        ):
            return read_all_service_credentials(iam, gaps)

    if pool is None:
        return (*details(), credential_report(), service_credentials())
    reads = [pool.submit(read) for read in (details, credential_report, service_credentials)]
    # In a serial read's order: a failed details read is raised as soon as it fails, without
    # waiting for the report (whose generation can take seconds).
    users, groups, policies = reads[0].result()
    return users, groups, policies, reads[1].result(), reads[2].result()


def inventory_account(
    session: boto3.Session,
    account: Account,
    rules: ClassificationRules,
    now: datetime | None = None,
    timings: dict[str, float] | None = None,
    user_concurrency: int = 1,
) -> AccountInventory:
    """Everything about the IAM users of one account, classified.

    Args:
        session: A session in the member account.
        account: The account being read.
        rules: How to classify users.
        now: The reference time for "inactive" (defaults to the current time).
        timings: If given, filled with seconds spent per phase (client; the bulk reads:
            authorization details, credential report and its wait, service credentials;
            per-user reads).
        user_concurrency: Users whose credentials are read at once (one client, shared).

    Raises:
        AwsAccessError: credentials refused while reading this account.
        botocore.exceptions.ClientError: any other AWS error (the caller records it).
    """
    now = now or datetime.now(UTC)
    clock = _PhaseClock(timings)
    iam = inventory_client(session)
    clock.lap("client")
    gaps = Gaps()
    account_id = account.account_id
    # The report is generated while the authorization details are read.
    with translate_errors(account_id=account_id, operation="iam:GetCredentialReport"):
        report_state = start_credential_report(iam)
    # One pool for the account (botocore clients are thread-safe): first the three bulk reads
    # at once (they don't depend on each other), then the users' own reads.
    pool = (
        ThreadPoolExecutor(max_workers=user_concurrency, thread_name_prefix="iamc-users")
        if user_concurrency > 1
        else None
    )
    try:
        raw_users, raw_groups, raw_policies, report, service_credentials = _bulk_reads(
            iam, account_id, report_state, gaps, pool
        )
        clock.lap("bulk_reads")

        def read_user(raw: dict[str, Any]) -> User:
            user = _user_from_details(raw)
            reads = UserReads(iam, report.get(user.name), gaps, service_credentials)
            with translate_errors(account_id=account_id, operation=f"credentials of {user.name}"):
                for kind in CREDENTIAL_KINDS:  # what the bulk reads don't give
                    READERS[kind.name](reads, user)
            user.user_class, user.class_reason, user.last_activity = classify_user(
                user, rules, now, account_id
            )
            return user

        ordered = sorted(raw_users, key=lambda u: u["UserName"])
        # Results keep the users' order, and the first failure fails the account as a serial
        # read would.
        users = list(pool.map(read_user, ordered)) if pool else [read_user(r) for r in ordered]
    except BaseException:
        if pool is not None:
            # The account has failed: reads still under way end on their own, unawaited.
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown()
    clock.lap("per_user")
    inventory = _assembled(account, users, _groups_from_details(raw_groups), raw_policies, gaps)
    inventory.roles, inventory.roles_quota = read_role_quota(iam, account_id, gaps.call)
    return inventory


def _assembled(
    account: Account,
    users: list[User],
    groups: list[Group],
    raw_policies: dict[str, dict[str, Any]],
    gaps: Gaps,
) -> AccountInventory:
    # Keep only the managed policies our users can reach (directly, through groups, or as a
    # boundary): AWS-managed policies number in the thousands and are the same everywhere.
    referenced = {p.arn for u in users for p in u.attached_policies}
    referenced |= {p.arn for g in groups for p in g.attached_policies}
    referenced |= {u.permissions_boundary_arn for u in users if u.permissions_boundary_arn}
    policies = [
        _managed_policy(raw_policies[arn]) for arn in sorted(referenced) if arn in raw_policies
    ]
    missing = sorted(referenced - set(raw_policies))
    inventory = AccountInventory(
        account=account,
        users=users,
        groups=groups,
        managed_policies=policies,
        gaps=sorted(gaps.missing),
    )
    if missing:
        inventory.gaps.append(f"policy documents not returned for: {', '.join(missing)}")
    return inventory


class _PhaseClock:
    """Adds the seconds since the last lap to ``timings[phase]`` (no-op without timings)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.timings is None:
            return
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
        self.last = now
