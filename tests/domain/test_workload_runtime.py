"""Runtime inference from recorded CloudTrail samples: every runtime, and the misleading ones.

The samples (``cloudtrail_samples/*.json``) are CloudTrail records as a trail delivers them
(``{"Records": [...]}``), with the user agents each runtime's SDK really sends.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.key_attribution import KeyFinding
from domain.workload_runtime import classify_agent, infer_placement, key_use_from_record
from domain.workload_spec import Workload
from domain.workloads import Confidence, KeyUsage, KeyUse, Runtime

SAMPLES = Path(__file__).parent / "cloudtrail_samples"
ACCOUNT = "603910436417"


def _sample(name: str) -> tuple[str, str, list]:
    records = json.loads((SAMPLES / f"{name}.json").read_text())["Records"]
    uses = [key_use_from_record(r) for r in records]
    first = records[0]["userIdentity"]
    return first["userName"], first["accessKeyId"], uses


def _place(name: str, findings: list | None = None, **kw):
    user, key_id, uses = _sample(name)
    keys = [KeyUsage(key_id, "Active", last_used=max(u.event_time for u in uses))]
    return infer_placement(ACCOUNT, user, keys, uses, findings or [], **kw), key_id


def _finding(key_id: str, source: str, location: str, root: str | None = None) -> KeyFinding:
    return KeyFinding(
        classification="org-key-active",
        source=source,
        location=location,
        line=1,
        key_id=key_id,
        root=root,
        owner_account_id=ACCOUNT,
    )


def _no_whole_key(placement, key_id: str) -> None:
    text = json.dumps(placement.evidence) + json.dumps(placement.keys[0].ignored)
    assert key_id not in text, text


def test_lambda_names_itself_and_trufflehog_is_not_usage():
    placement, key_id = _place("lambda")
    assert (placement.runtime, placement.confidence) == (Runtime.LAMBDA, Confidence.HIGH)
    assert placement.non_interactive
    assert placement.evidence[0] == (
        "exec-env/AWS_Lambda_python3.12 on 14 of 14 calls, last 2026-11-30"
    )
    key = placement.keys[0]
    assert key.events == 14  # the scanner's GetCallerIdentity is not one of them
    assert len(key.ignored) == 1 and "TruffleHog sts:GetCallerIdentity" in key.ignored[0]
    assert "not usage" in key.ignored[0]
    assert key.calls[0] in ("s3:ListBuckets", "dynamodb:DescribeTable")
    assert key.first_seen == datetime(2026, 11, 17, 6, 0, 17, tzinfo=UTC)
    _no_whole_key(placement, key_id)


def test_a_key_written_down_in_the_lambda_function_agrees():
    _, key_id, _ = _sample("lambda")
    where = f"{ACCOUNT} / us-east-1 / Lambda function report-gen (env AWS_ACCESS_KEY_ID)"
    placement, _ = _place("lambda", [_finding(key_id, "lambda", where)])
    assert placement.confidence == Confidence.HIGH
    assert f"key AKIA…{key_id[-4:]} written down in {where}" in placement.evidence
    assert placement.keys[0].written_down == [where]


def test_ecs_fargate():
    placement, _ = _place("ecs_fargate")
    assert (placement.runtime, placement.confidence) == (Runtime.ECS, Confidence.HIGH)


def test_codebuild_reports_ecs_on_ec2_and_the_codebuild_project_tells_it_apart():
    # Alone, exec-env/AWS_ECS_EC2 could be ECS on EC2 or CodeBuild: not HIGH for either.
    alone, key_id = _place("codebuild")
    assert (alone.runtime, alone.confidence) == (Runtime.ECS, Confidence.MEDIUM)
    assert any("CodeBuild reports too" in line for line in alone.evidence)
    where = f"{ACCOUNT} / us-east-1 / CodeBuild project nightly-build (env AWS_ACCESS_KEY_ID)"
    placement, _ = _place("codebuild", [_finding(key_id, "codebuild", where)])
    assert placement.runtime == Runtime.CODEBUILD
    assert placement.confidence == Confidence.HIGH


def test_codebuild_hint_in_the_agent():
    agent = "aws-cli/2.15.30 exec-env/AWS_ECS_EC2 md/codebuild#nightly-build"
    assert classify_agent(agent).runtime == Runtime.CODEBUILD


def test_github_actions_and_its_aws_cli_steps():
    _, key_id, _ = _sample("github_actions")
    workflow = _finding(key_id, "working-tree", ".github/workflows/deploy.yml:14", "/src/web")
    # The repository is the scanned clone's GitHub origin, not its path here.
    placement, _ = _place("github_actions", [workflow], repositories={"/src/web": "acme/web"})
    assert (placement.runtime, placement.confidence) == (Runtime.GITHUB_ACTIONS, Confidence.HIGH)
    assert placement.repository == "acme/web"
    assert _place("github_actions", [workflow])[0].repository is None
    assert placement.evidence[0].startswith("configure-aws-credentials-for-github-actions on 5 of")


def test_terraform():
    placement, _ = _place("terraform")
    assert (placement.runtime, placement.confidence) == (Runtime.TERRAFORM, Confidence.HIGH)
    assert placement.evidence[0].startswith("Terraform/1.9.5 on 4 of 4 calls")


def test_terraform_file_alone_is_medium():
    placement = infer_placement(
        ACCOUNT,
        "tf",
        [KeyUsage("AKIAYVP4CIPPT3RRA4FM", "Active")],
        [],
        [_finding("AKIAYVP4CIPPT3RRA4FM", "working-tree", "infra/providers.tf:3", "infra")],
    )
    assert (placement.runtime, placement.confidence) == (Runtime.TERRAFORM, Confidence.MEDIUM)
    assert not placement.non_interactive  # no use: no evidence it is a service


def test_ec2_from_a_plain_cli_on_amazon_linux_and_a_launch_template():
    # Amazon Linux in the agent, from one private network: an instance in a VPC.
    placement, key_id = _place("ec2")
    assert (placement.runtime, placement.confidence) == (Runtime.EC2, Confidence.MEDIUM)
    where = f"{ACCOUNT} / us-east-1 / EC2 launch template batch (user data)"
    placement, _ = _place("ec2", [_finding(key_id, "ec2-launch-template", where)])
    assert (placement.runtime, placement.confidence) == (Runtime.EC2, Confidence.MEDIUM)


def test_on_premises_from_one_public_address():
    placement, _ = _place("on_premises")
    assert (placement.runtime, placement.confidence) == (Runtime.ON_PREMISES, Confidence.LOW)
    assert any("81.2.69.160" in line and "public" in line for line in placement.evidence)
    assert placement.non_interactive


def test_vendor_agent():
    placement, _ = _place("vendor")
    assert (placement.runtime, placement.confidence) == (Runtime.VENDOR, Confidence.HIGH)
    assert placement.evidence[0].startswith("Datadog on 10 of 10 calls")


def test_console_and_sdk_mixed_is_not_non_interactive():
    placement, _ = _place("console_and_sdk")
    assert not placement.non_interactive
    assert placement.runtime == Runtime.UNKNOWN
    assert any("interactive: a person" in line for line in placement.evidence)


def test_nothing_known_is_unknown_with_no_confidence():
    placement = infer_placement(
        ACCOUNT, "ghost", [KeyUsage("AKIAYVP4CIPPZZZZ1234", "Active")], [], []
    )
    assert (placement.runtime, placement.confidence) == (Runtime.UNKNOWN, Confidence.NONE)
    assert not placement.placeable


def test_the_spec_settles_the_runtime_and_keeps_the_evidence():
    declared = Workload(
        account=ACCOUNT,
        user="ftp-sync",
        runtime=Runtime.VENDOR,
        vendor_account="123456789012",
        external_id="ext-1",
        owner="partners@example.com",
    )
    placement, _ = _place("on_premises", declared=declared)
    assert (placement.runtime, placement.confidence) == (Runtime.VENDOR, Confidence.HIGH)
    assert placement.settled_by == "spec"
    assert placement.evidence[0].startswith("declared in [[workloads]]")
    assert "inferred: on-premises (low)" in placement.evidence
    assert (placement.vendor_account, placement.external_id) == ("123456789012", "ext-1")
    assert placement.owner == "partners@example.com"


@pytest.mark.parametrize(
    "agent",
    ["TruffleHog", "gitleaks/8.18", "GitGuardian-ggshield/1.2", "python-requests ggshield"],
)
def test_secret_scanners(agent):
    assert classify_agent(agent).kind == "scanner"


@pytest.mark.parametrize(
    "agent",
    [
        "signin.amazonaws.com",
        "console.amazonaws.com",
        "Mozilla/5.0 (X11)",
        "aws-cli/2 exec-env/CloudShell",
    ],
)
def test_interactive_clients(agent):
    assert classify_agent(agent).kind == "interactive"


def _plain_uses(key_id: str, agent: str, addresses: list[str]) -> list[KeyUse]:
    return [
        KeyUse(
            key_id,
            datetime(2026, 12, 1, n, tzinfo=UTC),
            "dynamodb.amazonaws.com",
            "GetItem",
            "us-east-1",
            address,
            agent,
        )
        for n, address in enumerate(addresses)
    ]


def test_amazon_linux_from_changing_networks_is_only_a_guess():
    key_id = "AKIAYVP4CIPPEC2A1234"
    agent = "Boto3/1.26.137 Python/3.9.16 Linux/5.10.178-162.673.amzn2.x86_64 Botocore/1.29"
    uses = _plain_uses(key_id, agent, ["10.20.1.5", "172.31.7.9", "10.99.3.3"])
    placement = infer_placement(ACCOUNT, "batch", [KeyUsage(key_id, "Active")], uses, [])
    assert (placement.runtime, placement.confidence) == (Runtime.EC2, Confidence.LOW)


def test_a_plain_sdk_from_networks_that_change_is_placed_nowhere():
    """The one nobody can place: a plain SDK, no hint, from four networks in a fortnight."""
    key_id = "AKIAYVP4CIPPUNKN1234"
    agent = "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1.0 lang/python#3.11.6"
    addresses = ["198.51.100.7", "203.0.113.9", "100.64.12.4", "172.31.200.8"]
    uses = _plain_uses(key_id, agent, addresses)
    placement = infer_placement(ACCOUNT, "transcoder", [KeyUsage(key_id, "Active")], uses, [])
    assert placement.runtime == Runtime.UNKNOWN and placement.confidence == Confidence.LOW
    assert placement.non_interactive  # a service all the same: evidence for CIS 1.21


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/platform-app.git", "acme/platform-app"),
        ("https://token@github.com/acme/web", "acme/web"),
        ("git@github.com:acme/infra.git\n", "acme/infra"),
        ("ssh://git@github.com/acme/ops.git", "acme/ops"),
        ("https://gitlab.com/acme/web.git", None),
        ("https://github.com/acme", None),
    ],
)
def test_the_repository_is_the_clones_github_origin(url: str, repository: str | None):
    from scanner.git_remote import github_repository

    assert github_repository(url) == repository
