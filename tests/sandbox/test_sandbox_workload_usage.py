"""Usage playback: each seeded workload user's key makes its runtime's calls, as CloudTrail and
the key's last use then show; one user nobody can place; a scanner's probe; the switch."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from domain.workloads import ROLE_PATH, replacement_role_name
from sandbox.control import SandboxControl
from sandbox.oidc import GITHUB_ISSUER
from sandbox.seed import seed_organization
from sandbox.seed_manifest import SeedManifest
from sandbox.server import Sandbox

SEED = 7


@pytest.fixture(scope="module")
def seeded(sandbox: Sandbox) -> tuple[SeedManifest, dict[str, Any]]:
    sandbox.reset(seed=SEED)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    manifest = seed_organization(
        session, accounts=3, users_per_account=12, seed=SEED, endpoint_url=sandbox.url
    )
    played = SandboxControl(sandbox.url).play_workload_usage(
        days=10, rounds=3, manifest=manifest.to_dict()
    )
    return manifest, played


def _member(sandbox: Sandbox, account_id: str, service: str) -> Any:
    sts = boto3.client(
        "sts",
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="usage-tests",
    )["Credentials"]
    return boto3.client(
        service,
        endpoint_url=sandbox.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _key_events(sandbox: Sandbox, account_id: str, user: str) -> list[dict[str, Any]]:
    iam = _member(sandbox, account_id, "iam")
    keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    key_id = next(k["AccessKeyId"] for k in keys if k["Status"] == "Active")
    trail = _member(sandbox, account_id, "cloudtrail")
    pages = trail.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": key_id}]
    )
    return [json.loads(e["CloudTrailEvent"]) for page in pages for e in page["Events"]]


def test_every_workload_user_is_played_as_its_runtime(seeded, control) -> None:
    manifest, played = seeded
    workloads = {
        (a.account_id, u.name)
        for a in manifest.accounts
        for u in a.users
        if u.kind in ("workload", "workload-two-keys", "workload-policies")
    }
    runtimes = {(p["account_id"], p["user"]): p["runtime"] for p in played["played"]}
    assert set(runtimes) == workloads
    by_name = {user: runtime for (_, user), runtime in runtimes.items()}
    assert by_name["ci-deployer"] == "github-actions"
    assert by_name["metrics-exporter"] == "lambda"
    assert by_name["etl-loader"] == "ecs"
    assert by_name["terraform-runner"] == "terraform"
    assert by_name["jenkins"] == "on-premises"
    # Exactly one workload of the organization nobody can place: the first media-transcoder.
    assert Counter(runtimes.values())["unknown"] == 1
    assert [p["user"] for p in played["unplaceable"]] == ["media-transcoder"]
    assert all(p["errors"] == 0 for p in played["played"]), played["played"]
    assert {(w["account_id"], w["user"]): w["runtime"] for w in control.workload_runtimes()} == (
        runtimes
    )


@pytest.mark.parametrize(
    ("user", "agent_hint", "address_prefix"),
    [
        ("ci-deployer", "configure-aws-credentials-for-github-actions", "20."),
        ("metrics-exporter", "exec-env/AWS_Lambda_python3.12", "3.238."),
        ("etl-loader", "exec-env/AWS_ECS_FARGATE", "44.210."),
        ("backup-agent", "Boto3/1.26.137 Python/3.9.16", "10.20."),
        ("terraform-runner", "Terraform/1.9.5", "34.201."),
        ("datadog-integration", "Datadog/", "3.233."),
        ("jenkins", "aws-cli/2.15.30", "192.0.2."),
    ],
)
def test_cloudtrail_shows_each_runtimes_agent_and_address(
    seeded, sandbox, user, agent_hint, address_prefix
) -> None:
    _, played = seeded
    account_id = next(p["account_id"] for p in played["played"] if p["user"] == user)
    events = [e for e in _key_events(sandbox, account_id, user) if e["userAgent"] != "TruffleHog"]
    assert len(events) == next(p["calls"] for p in played["played"] if p["user"] == user)
    assert any(agent_hint in e["userAgent"] for e in events)
    assert {e["sourceIPAddress"][: len(address_prefix)] for e in events} == {address_prefix}, [
        (e["userAgent"][:20], e["sourceIPAddress"], e["eventName"]) for e in events
    ]
    times = sorted(datetime.fromisoformat(e["eventTime"]) for e in events)
    assert times[-1] - times[0] > timedelta(days=9)


def test_the_unplaceable_user_wanders_and_says_nothing(seeded, sandbox) -> None:
    _, played = seeded
    nobody = played["unplaceable"][0]
    events = _key_events(sandbox, nobody["account_id"], nobody["user"])
    assert len({e["sourceIPAddress"] for e in events}) >= 2
    assert all("exec-env" not in e["userAgent"] for e in events)
    assert all(e["userAgent"].startswith("Boto3/") for e in events)


def test_the_scanner_probes_the_committed_key_once_and_last_used_stays_the_workloads(
    seeded, sandbox
) -> None:
    _, played = seeded
    probe = played["noise"][0]
    assert probe["user"] == "ci-deployer" and probe["user_agent"] == "TruffleHog"
    events = _key_events(sandbox, probe["account_id"], "ci-deployer")
    scans = [e for e in events if e["userAgent"] == "TruffleHog"]
    assert [e["eventName"] for e in scans] == ["GetCallerIdentity"]
    iam = _member(sandbox, probe["account_id"], "iam")
    key_id = next(
        k["AccessKeyId"]
        for k in iam.list_access_keys(UserName="ci-deployer")["AccessKeyMetadata"]
        if k["Status"] == "Active"
    )
    used = iam.get_access_key_last_used(AccessKeyId=key_id)["AccessKeyLastUsed"]["LastUsedDate"]
    assert datetime.now(UTC) - used < timedelta(hours=1)


def test_forwarded_for_is_a_switch(seeded, sandbox, control) -> None:
    manifest, _ = seeded
    control.configure(forwarded_for=False)
    again = control.play_workload_usage(days=1, rounds=1, manifest=manifest.to_dict())
    lam = next(p for p in again["played"] if p["runtime"] == "lambda")
    events = _key_events(sandbox, lam["account_id"], lam["user"])
    assert events[0]["sourceIPAddress"] == "127.0.0.1"


def test_a_switched_workload_runs_on_its_role_and_its_key_goes_quiet(seeded, sandbox, control):
    manifest, played = seeded
    ci = next(p for p in played["played"] if p["user"] == "ci-deployer")
    account_id = ci["account_id"]
    iam = _member(sandbox, account_id, "iam")
    iam.create_open_id_connect_provider(
        Url=GITHUB_ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["b" * 40]
    )
    provider = f"arn:aws:iam::{account_id}:oidc-provider/token.actions.githubusercontent.com"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                        "token.actions.githubusercontent.com:sub": (
                            "repo:acme/app:ref:refs/heads/main"
                        ),
                    }
                },
            }
        ],
    }
    iam.create_role(
        RoleName=replacement_role_name("ci-deployer"),
        Path=ROLE_PATH,
        AssumeRolePolicyDocument=json.dumps(trust),
    )
    with pytest.raises(Exception, match="AccessDenied"):
        control.switch_workload(account_id, "ci-deployer", "github-actions", "acme/other")
    switched = control.switch_workload(account_id, "ci-deployer", "github-actions", "acme/app")
    assert switched["assumed_by"] == "GitHub OIDC token of acme/app"
    before = len(_key_events(sandbox, account_id, "ci-deployer"))
    replay = control.play_workload_usage(days=1, rounds=1, manifest=manifest.to_dict())
    assert ("ci-deployer", account_id) not in {
        (p["user"], p["account_id"]) for p in replay["played"]
    }
    assert len(_key_events(sandbox, account_id, "ci-deployer")) == before
