"""Realistic usage of the seeded workload users' keys, played as real signed requests.

Each workload user is given a runtime from its name (ci-deployer: GitHub Actions,
metrics-exporter: Lambda, …) and its key makes a few calls per round, over the past days, with
the user agent and source address that runtime's SDK and network give, so CloudTrail and the
keys' last-used dates hold what a workload inference reads in a real organization. Exactly one
user of the organization is played so that nobody can place it, and one key gets a secret
scanner's probe (TruffleHog), which is not usage.

Runs in the sandbox's process (the keys' secrets are in moto there) and sends its requests
through the sandbox's own endpoint, so the strict layer records them as any other request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.keys import mask_key_id
from domain.workloads import Runtime

# The runtime each seeded workload name is played as (names of sandbox/seed_iam_users.py).
RUNTIME_OF_NAME: dict[str, Runtime] = {
    "ci-deployer": Runtime.GITHUB_ACTIONS,
    "metrics-exporter": Runtime.LAMBDA,
    "report-generator": Runtime.LAMBDA,
    "log-shipper": Runtime.ECS,
    "etl-loader": Runtime.ECS,
    "media-transcoder": Runtime.ECS,
    "backup-agent": Runtime.EC2,
    "terraform-runner": Runtime.TERRAFORM,
    "datadog-integration": Runtime.VENDOR,
    "jenkins": Runtime.ON_PREMISES,
}
# The user nobody can place: the first of these names in the organization, in this order.
UNPLACEABLE_NAMES = ("media-transcoder", "jenkins")
SCANNER_AGENT = "TruffleHog"

_CONFIGURE_CREDENTIALS = (
    "aws-sdk-nodejs/3.620.0 ua/2.1 os/linux#6.5.0-1025-azure lang/js md/nodejs#20.16.0 "
    "api/sts#3.620.0 configure-aws-credentials-for-github-actions"
)
_GITHUB_CLI = (
    "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 "
    "lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe "
    "md/distrib#ubuntu.22 md/prompt#off md/command#{command}"
)
_LAMBDA = (
    "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.224-233.885.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.12.4 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 "
    "cfg/retry-mode#legacy Botocore/1.34.145"
)
_ECS = (
    "Boto3/1.34.100 md/Botocore#1.34.100 ua/2.0 os/linux#5.10.219-208.866.amzn2.x86_64 "
    "md/arch#x86_64 lang/python#3.11.9 md/pyimpl#CPython exec-env/AWS_ECS_FARGATE "
    "cfg/retry-mode#legacy Botocore/1.34.100"
)
_EC2 = "Boto3/1.26.137 Python/3.9.16 Linux/5.10.178-162.673.amzn2.x86_64 Botocore/1.29.137"
_TERRAFORM = (
    "APN/1.0 HashiCorp/1.0 Terraform/1.9.5 (+https://www.terraform.io) "
    "terraform-provider-aws/5.70.0 (+https://registry.terraform.io/providers/hashicorp/aws) "
    "aws-sdk-go-v2/1.31.0 os/linux lang/go#1.22.6 md/GOOS#linux md/GOARCH#amd64 api/{api}#1.0"
)
_DATADOG = "Datadog/7.0 (+https://www.datadoghq.com) aws-sdk-go/1.50.8 (go1.21.6; linux; amd64)"
_JENKINS = (
    "aws-cli/2.15.30 Python/3.11.8 Linux/5.15.0-101-generic exe/x86_64.ubuntu.22 "
    "prompt/off command/{command}"
)
_PLAIN_BOTO3 = (
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1.0 md/arch#x86_64 lang/python#3.11.6 "
    "md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.0"
)

# (service, operation, parameters) in the order a run of that runtime makes them.
_CALLS: dict[str, tuple[tuple[str, str, dict[str, Any]], ...]] = {
    Runtime.GITHUB_ACTIONS: (
        ("sts", "GetCallerIdentity", {}),
        ("ecr", "GetAuthorizationToken", {}),
        ("ecr", "DescribeRepositories", {}),
        ("cloudformation", "DescribeStacks", {}),
    ),
    Runtime.LAMBDA: (
        ("dynamodb", "ListTables", {}),
        ("sqs", "ListQueues", {}),
    ),
    Runtime.ECS: (
        ("logs", "DescribeLogGroups", {}),
        ("kinesis", "ListStreams", {}),
        ("sqs", "ListQueues", {}),
    ),
    Runtime.EC2: (
        ("ec2", "DescribeVolumes", {}),
        ("ec2", "DescribeSnapshots", {"OwnerIds": ["self"]}),
    ),
    Runtime.TERRAFORM: (
        ("sts", "GetCallerIdentity", {}),
        ("iam", "ListRoles", {"MaxItems": 20}),
        ("ec2", "DescribeVpcs", {}),
    ),
    Runtime.VENDOR: (
        ("resourcegroupstaggingapi", "GetResources", {}),
        ("logs", "DescribeLogGroups", {}),
        ("ec2", "DescribeInstances", {}),
    ),
    Runtime.ON_PREMISES: (
        ("sts", "GetCallerIdentity", {}),
        ("ecr", "GetAuthorizationToken", {}),
        ("ecr", "DescribeRepositories", {}),
    ),
    Runtime.UNKNOWN: (
        ("sts", "GetCallerIdentity", {}),
        ("dynamodb", "ListTables", {}),
        ("sqs", "ListQueues", {}),
    ),
}


@dataclass(frozen=True)
class Workload:
    """A seeded workload user with an active key, and the runtime it is played as."""

    account_id: str
    user: str
    access_key_id: str
    secret: str
    runtime: Runtime

    def view(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "user": self.user,
            "runtime": str(self.runtime),
            "access_key": mask_key_id(self.access_key_id),
        }


# Datadog's AWS account, which its integration assumes roles from (Datadog docs, "AWS
# integration": the role trusts arn:aws:iam::464622532012:root with an ExternalId); the
# owners' switch assumes from there and the demo's spec declares it.
VENDOR_ACCOUNTS = {"datadog": "464622532012"}


def base_name(user: str) -> str:
    """The seeded name without the ``-2``, ``-3`` a later cycle appends."""
    return re.sub(r"-\d+$", "", user)


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:4], "big")


def seeded_workloads(
    manifest: dict[str, Any] | None, skip: set[tuple[str, str]] | None = None
) -> list[Workload]:
    """The organization's workload users with an active key, in the seed's account order,
    each with the runtime it is played as; exactly one (the first media-transcoder, else the
    first jenkins) is the one nobody can place.

    Args:
        manifest: The seed manifest (``kind`` says who is a workload); without one, users are
            recognized by the seed's workload names.
        skip: (account, user) pairs to leave out, e.g. those already switched to a role.
    """
    from moto.iam.models import iam_backends

    from sandbox.seed_iam_users import WORKLOAD_KINDS

    order: list[tuple[str, set[str] | None]] = []
    if manifest and manifest.get("accounts"):
        for account in manifest["accounts"]:
            kinds = {u["name"] for u in account.get("users", []) if u["kind"] in WORKLOAD_KINDS}
            order.append((account["account_id"], kinds))
    else:
        order = [(account_id, None) for account_id in list(iam_backends)]
    found: list[Workload] = []
    for account_id, names in order:
        if account_id not in iam_backends:
            continue
        for user in list(iam_backends[account_id]["aws"].users.values()):
            runtime = RUNTIME_OF_NAME.get(base_name(user.name))
            if runtime is None or (names is not None and user.name not in names):
                continue
            key = next((k for k in user.access_keys if k.status == "Active"), None)
            if key is None or (skip and (account_id, user.name) in skip):
                continue
            found.append(
                Workload(account_id, user.name, key.access_key_id, key.secret_access_key, runtime)
            )
    return _one_unplaceable(found)


def _one_unplaceable(found: list[Workload]) -> list[Workload]:
    for name in UNPLACEABLE_NAMES:
        first = next((w for w in found if base_name(w.user) == name), None)
        if first is not None:
            return [
                Workload(w.account_id, w.user, w.access_key_id, w.secret, Runtime.UNKNOWN)
                if w is first
                else w
                for w in found
            ]
    return found


def user_agent(runtime: Runtime, service: str, operation: str) -> str:
    """What the runtime's SDK or tool sends as User-Agent for one call."""
    command = f"{service}.{_dashed(operation)}"
    if runtime is Runtime.GITHUB_ACTIONS:
        if (service, operation) == ("sts", "GetCallerIdentity"):
            return _CONFIGURE_CREDENTIALS
        return _GITHUB_CLI.format(command=command)
    agents = {
        Runtime.LAMBDA: _LAMBDA,
        Runtime.ECS: _ECS,
        Runtime.EC2: _EC2,
        Runtime.TERRAFORM: _TERRAFORM.format(api=service),
        Runtime.VENDOR: _DATADOG,
        Runtime.ON_PREMISES: _JENKINS.format(command=command),
        Runtime.CODEBUILD: _ECS.replace("AWS_ECS_FARGATE", "AWS_ECS_EC2"),
    }
    return agents.get(runtime, _PLAIN_BOTO3)


def source_ip(workload: Workload, round_: int) -> str:
    """The address the runtime's requests come from: stable per workload (a NAT gateway, the
    vendor's crawler, the on-premises proxy), varying per round for the one nobody places."""
    n = _digest(workload.account_id, workload.user)
    a, b = n % 200 + 20, (n >> 8) % 250 + 1
    by_runtime = {
        Runtime.GITHUB_ACTIONS: f"20.{42 + round_ % 3}.{a}.{(b + round_ * 7) % 250 + 1}",
        Runtime.LAMBDA: f"3.238.{a}.{b}",
        Runtime.ECS: f"44.210.{a}.{b}",
        Runtime.EC2: f"10.20.{a}.{b}",
        Runtime.TERRAFORM: f"34.201.{a}.{b}",
        Runtime.VENDOR: f"3.233.{144 + a % 16}.{b}",
        Runtime.ON_PREMISES: f"192.0.2.{b}",
    }
    if workload.runtime in by_runtime:
        return by_runtime[workload.runtime]
    wandering = ("198.51.100", "203.0.113", "100.64.12", "172.31.200")
    return f"{wandering[(n + round_) % len(wandering)]}.{(b + 31 * round_) % 250 + 1}"


def round_times(now: datetime, days: int, rounds: int, workload: Workload) -> Iterator[datetime]:
    """When each round ran, oldest first, spread over the past ``days`` (the last one within
    the last hour), at a per-workload minute so workloads don't all run at once."""
    minute = _digest(workload.user, workload.account_id) % 50 + 5
    for index in range(rounds):
        ago = days * (rounds - 1 - index) / max(rounds - 1, 1)
        yield now - timedelta(days=ago, minutes=minute)


def runtime_calls(runtime: Runtime) -> tuple[tuple[str, str, dict[str, Any]], ...]:
    return _CALLS.get(runtime, _CALLS[Runtime.UNKNOWN])


def _dashed(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", operation).lower()
