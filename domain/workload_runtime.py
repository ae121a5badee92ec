"""Where a workload user's key is used from: the runtime, inferred from CloudTrail and the scan.

Pure: :func:`infer_placement` reads the requests a key signed (``KeyUse``: user agent, source
address, service and action) and where the key scan found it written down, and says which
runtime most likely holds the key, with one evidence line per signal and a confidence.

The user agent is the strongest signal where the runtime names itself: the AWS SDKs append
``exec-env/$AWS_EXECUTION_ENV``, which Lambda sets to ``AWS_Lambda_<runtime>`` and ECS to
``AWS_ECS_FARGATE`` / ``AWS_ECS_EC2`` (AWS SDKs and Tools reference, "Execution environment").
CodeBuild runs its builds on ECS and its images set ``AWS_EXECUTION_ENV=AWS_ECS_EC2`` too
(CodeBuild user guide, "Environment variables in build environments" lists ``CODEBUILD_*``),
so an ``AWS_ECS_EC2`` agent is CodeBuild when a ``codebuild`` hint or a key found in a
CodeBuild project says so. Secret scanners verifying a found key (TruffleHog, gitleaks,
GitGuardian calling ``sts:GetCallerIdentity``) are not usage; console and CloudShell requests
are a person's.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.key_findings import HitSource
from domain.keys import mask_key_id
from domain.workloads import Confidence, KeyUsage, KeyUse, Placement, Runtime

# Clients whose requests verify a leaked key rather than use it (lowercase substrings).
SCANNERS = (
    "trufflehog",
    "gitleaks",
    "gitguardian",
    "ggshield",
    "detect-secrets",
    "keyhacks",
    "awscompromisedkey",
)
# Clients a person drives: the console, a browser, CloudShell (lowercase substrings).
INTERACTIVE = (
    "signin.amazonaws.com",
    "console.amazonaws.com",
    "exec-env/cloudshell",
    "mozilla/",
    "aws-internal/3 aws-sdk-java",
)
# Vendors whose agent names itself (lowercase substring -> the vendor's name).
VENDORS = {
    "datadog": "Datadog",
    "newrelic": "New Relic",
    "new relic": "New Relic",
    "sumologic": "Sumo Logic",
    "splunk": "Splunk",
    "cloudhealth": "CloudHealth",
    "lacework": "Lacework",
    "wiz-": "Wiz",
    "orca-security": "Orca Security",
}
# A plain SDK or CLI: non-interactive, but names no runtime.
_PLAIN = re.compile(r"(aws-cli/|boto3/|botocore/|aws-sdk-|aws-powershell|aws-toolkit)", re.I)
_LAMBDA = re.compile(r"exec-env/AWS_Lambda_[\w.-]+", re.I)
_ECS = re.compile(r"exec-env/AWS_ECS_(FARGATE|EC2)", re.I)
_CODEBUILD = re.compile(r"codebuild[\w./-]*", re.I)
_GITHUB = re.compile(r"(configure-aws-credentials-for-github-actions|github-actions)[\w./-]*", re.I)
_TERRAFORM = (
    re.compile(r"Terraform/[\w.-]+"),
    re.compile(r"terraform-provider-aws/[\w.-]+"),
    re.compile(r"HashiCorp/[\w.-]+"),
)
# Hints of Amazon Linux or the instance metadata service in a plain SDK's agent: an EC2 host.
_EC2_HINT = re.compile(r"(\.amzn\d*|md/imds|exec-env/EC2)[\w.-]*", re.I)

_FINDING_RUNTIME = {
    HitSource.LAMBDA: Runtime.LAMBDA,
    HitSource.ECS: Runtime.ECS,
    HitSource.EC2_LAUNCH_TEMPLATE: Runtime.EC2,
    HitSource.EC2_INSTANCE: Runtime.EC2,
    HitSource.CODEBUILD: Runtime.CODEBUILD,
}
# Runtimes whose agent names them: HIGH when nothing contradicts.
_SELF_NAMED = frozenset(
    {Runtime.LAMBDA, Runtime.ECS, Runtime.CODEBUILD, Runtime.GITHUB_ACTIONS, Runtime.TERRAFORM}
)


@dataclass(frozen=True)
class Signal:
    """What one request's user agent says: a runtime (or none), and the words that said it."""

    kind: str  # runtime | scanner | interactive | plain | unknown
    runtime: Runtime | None = None
    token: str = ""


def classify_agent(user_agent: str | None) -> Signal:
    """What a CloudTrail ``userAgent`` says about its client (see the module's docstring)."""
    agent = user_agent or ""
    low = agent.lower()
    for name in SCANNERS:
        if name in low:
            return Signal("scanner", token=_word(agent, name))
    for name in INTERACTIVE:
        if name in low:
            return Signal("interactive", token=_word(agent, name))
    if match := _LAMBDA.search(agent):
        return Signal("runtime", Runtime.LAMBDA, match.group(0))
    if match := _ECS.search(agent):
        hint = _CODEBUILD.search(agent)
        if hint:
            return Signal("runtime", Runtime.CODEBUILD, f"{match.group(0)} + {hint.group(0)}")
        return Signal("runtime", Runtime.ECS, match.group(0))
    if match := _CODEBUILD.search(agent):
        return Signal("runtime", Runtime.CODEBUILD, match.group(0))
    if match := _GITHUB.search(agent):
        return Signal("runtime", Runtime.GITHUB_ACTIONS, match.group(0))
    for pattern in _TERRAFORM:
        if match := pattern.search(agent):
            return Signal("runtime", Runtime.TERRAFORM, match.group(0))
    for name, vendor in VENDORS.items():
        if name in low:
            return Signal("runtime", Runtime.VENDOR, vendor)
    if match := _PLAIN.search(agent):
        hint = _EC2_HINT.search(agent)
        token = _word(agent, match.group(0).lower())
        return Signal("plain", Runtime.EC2 if hint else None, token)
    return Signal("unknown", token=agent[:60] or "no user agent")


def _word(agent: str, needle: str) -> str:
    """The whitespace-separated word of ``agent`` containing ``needle`` (case-insensitive)."""
    for word in agent.split():
        if needle.split()[0] in word.lower():
            return word
    return needle


def finding_runtime(source: str, location: str) -> Runtime | None:
    """The runtime a key scan finding points at: its AWS source, or a workflow or ``.tf`` file."""
    if source in _FINDING_RUNTIME:
        return _FINDING_RUNTIME[HitSource(source)]
    path = location.split("!")[-1].rsplit(":", 1)[0]
    if ".github/workflows/" in path:
        return Runtime.GITHUB_ACTIONS
    if path.endswith((".tf", ".tfvars", ".tf.json")):
        return Runtime.TERRAFORM
    return None


def repository_of(finding: Any, repositories: Mapping[str, str]) -> str | None:
    """``owner/name`` of a workflow file's repository: the GitHub ``origin`` of the clone the
    key scan read (``repositories``: scanned root -> repository), never a guess from a path."""
    root = getattr(finding, "root", None)
    if not root or ".github/workflows/" not in getattr(finding, "location", ""):
        return None
    return repositories.get(root)


def _is_public(address: str | None) -> bool | None:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None  # an AWS service's name (e.g. lambda.amazonaws.com) or nothing
    return ip.is_global


def key_use_from_record(record: dict[str, Any], access_key_id: str | None = None) -> KeyUse:
    """A CloudTrail record (``CloudTrailEvent``'s JSON) as a :class:`KeyUse`."""
    identity = record.get("userIdentity") or {}
    when = record.get("eventTime")
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return KeyUse(
        access_key_id=access_key_id or identity.get("accessKeyId") or "",
        event_time=when,
        event_source=record.get("eventSource") or "?",
        event_name=record.get("eventName") or "?",
        region=record.get("awsRegion") or "?",
        source_ip=record.get("sourceIPAddress"),
        user_agent=record.get("userAgent"),
        error_code=record.get("errorCode"),
    )


def _day(when: datetime | None) -> str:
    return when.date().isoformat() if when else "-"


def summarize_key(key: KeyUsage, uses: list[KeyUse], written_down: list[str]) -> KeyUsage:
    """``key`` with its events summed up; scanner traffic moved to ``ignored``, with why."""
    counted = []
    for use in uses:
        signal = classify_agent(use.user_agent)
        if signal.kind == "scanner":
            key.ignored.append(
                f"{signal.token} {_call(use)} at {use.event_time.isoformat()}: a secret "
                "scanner verifying the key, not usage"
            )
        else:
            counted.append(use)
    key.events = len(counted)
    times = [u.event_time for u in counted]
    key.first_seen, key.last_seen = min(times, default=None), max(times, default=None)
    key.user_agents = _ranked(u.user_agent or "" for u in counted)
    key.source_ips = _ranked(u.source_ip or "" for u in counted)
    key.calls = _ranked(_call(u) for u in counted)
    key.written_down = list(written_down)
    return key


def _call(use: KeyUse) -> str:
    return f"{use.event_source.split('.')[0]}:{use.event_name}"


def _ranked(values: Iterable[str]) -> list[str]:
    return [v for v, _ in Counter(v for v in values if v).most_common()]


def infer_placement(
    account_id: str,
    user: str,
    keys: list[KeyUsage],
    uses: list[KeyUse],
    findings: list[Any],
    *,
    declared: Any = None,
    owner: str | None = None,
    role_first_used: datetime | None = None,
    repositories: Mapping[str, str] | None = None,
) -> Placement:
    """Where ``user``'s keys are used from, the runtime that most likely holds them, and why.

    Args:
        account_id: The user's account.
        user: The IAM user.
        keys: One per access key: ``access_key_id``, ``status``, ``last_used`` (the rest is
            filled in here).
        uses: CloudTrail events signed by those keys.
        findings: The key scan's findings of those keys (``domain.key_attribution.KeyFinding``
            or anything with ``key_id``, ``source``, ``location``, ``root``, ``where()``).
        declared: The user's ``[[workloads]]`` entry (``domain.workload_spec.Workload``): it
            settles the runtime; the inferred evidence is kept.
        owner: Who changes the workload (the user's ``owner`` tag), unless declared.
        role_first_used: When the replacement role was first used.

    Returns:
        The placement, every key id in its evidence masked.
    """
    by_key: dict[str, list[KeyUse]] = {}
    for use in uses:
        by_key.setdefault(use.access_key_id, []).append(use)
    for key in keys:
        mine = [f for f in findings if getattr(f, "key_id", None) == key.access_key_id]
        summarize_key(key, by_key.get(key.access_key_id, []), [f.where() for f in mine])
    counted = [
        u for u in uses if classify_agent(u.user_agent).kind != "scanner" and _known(u, keys)
    ]
    runtime, confidence, evidence, interactive = _infer(counted, findings, keys)
    placement = Placement(
        account_id=account_id,
        user=user,
        runtime=runtime,
        confidence=confidence,
        evidence=evidence,
        keys=keys,
        owner=owner,
        non_interactive=bool(counted) and interactive == 0,
        role_first_used=role_first_used,
    )
    known = repositories or {}
    placement.repository = next(filter(None, (repository_of(f, known) for f in findings)), None)
    if declared is not None:
        _settle(placement, declared)
    return placement


def _known(use: KeyUse, keys: list[KeyUsage]) -> bool:
    return any(k.access_key_id == use.access_key_id for k in keys)


def _settle(placement: Placement, declared: Any) -> None:
    inferred = f"inferred: {placement.runtime} ({placement.confidence})"
    placement.evidence = [
        f"declared in [[workloads]]: {declared.runtime}"
        + (f" (owner {declared.owner})" if declared.owner else ""),
        inferred,
        *placement.evidence,
    ]
    placement.runtime = Runtime(declared.runtime)
    placement.confidence = Confidence.HIGH
    placement.settled_by = "spec"
    placement.repository = declared.repository or placement.repository
    placement.vendor_account = declared.vendor_account
    placement.external_id = declared.external_id
    placement.trust_anchor_arn = declared.trust_anchor_arn
    placement.owner = declared.owner or placement.owner


def _infer(
    uses: list[KeyUse], findings: list[Any], keys: list[KeyUsage]
) -> tuple[Runtime, Confidence, list[str], int]:
    """(runtime, confidence, evidence lines, interactive uses)."""
    signals = [(u, classify_agent(u.user_agent)) for u in uses]
    total = len(signals)
    evidence: list[str] = []
    votes: Counter[Runtime] = Counter()
    groups: dict[str, list[KeyUse]] = {}
    for use, signal in signals:
        groups.setdefault(f"{signal.kind}\t{signal.token}", []).append(use)
        if signal.kind == "runtime" and signal.runtime is not None:
            votes[signal.runtime] += 1
    for group, members in sorted(groups.items(), key=lambda g: -len(g[1])):
        kind, token = group.split("\t", 1)
        last = max(u.event_time for u in members)
        what = {"interactive": " (interactive: a person)", "plain": " (plain SDK/CLI)"}
        evidence.append(
            f"{token}{what.get(kind, '')} on {len(members)} of {total} calls, last {_day(last)}"
        )
    addresses = _ranked(u.source_ip or "" for u in uses)
    if addresses:
        kinds = {_is_public(a) for a in addresses} - {None}
        where = {frozenset({True}): "public", frozenset({False}): "private (VPC)"}
        evidence.append(
            f"from {len(addresses)} address(es), {where.get(frozenset(kinds), 'mixed')}: "
            + ", ".join(addresses[:3])
            + (" …" if len(addresses) > 3 else "")
        )
    ignored = [line for k in keys for line in k.ignored]
    if ignored:
        evidence.append(f"{len(ignored)} call(s) ignored: {ignored[0]}")
    interactive = sum(1 for _, s in signals if s.kind == "interactive")
    written: Counter[Runtime] = Counter()
    for finding in findings:
        runtime = finding_runtime(getattr(finding, "source", ""), getattr(finding, "location", ""))
        evidence.append(f"key {mask_key_id(finding.key_id)} written down in {finding.where()}")
        if runtime is not None:
            written[runtime] += 1
    if any(k.last_used for k in keys) and not total:
        last = max(k.last_used for k in keys if k.last_used)
        evidence.append(f"last used {_day(last)} (GetAccessKeyLastUsed), no CloudTrail event")
    # CodeBuild reports exec-env/AWS_ECS_EC2 too: a key found in a CodeBuild project decides.
    if Runtime.CODEBUILD in written and votes.get(Runtime.ECS):
        votes[Runtime.CODEBUILD] += votes.pop(Runtime.ECS)
        evidence.append(
            "exec-env/AWS_ECS_EC2 is what CodeBuild reports too, and the key is in a CodeBuild "
            "project: CodeBuild"
        )
    elif votes.get(Runtime.ECS) and _only_ecs_on_ec2(signals) and Runtime.ECS not in written:
        evidence.append(
            "exec-env/AWS_ECS_EC2 is what CodeBuild reports too: ECS on EC2 or CodeBuild"
        )
    runtime, confidence = _decide(signals, votes, written, interactive)
    return runtime, confidence, evidence, interactive


def _decide(
    signals: list[tuple[KeyUse, Signal]],
    votes: Counter[Runtime],
    written: Counter[Runtime],
    interactive: int,
) -> tuple[Runtime, Confidence]:
    total = len(signals)
    if votes:
        runtime, count = votes.most_common(1)[0]
        # A plain SDK or CLI beside a self-named runtime is the same host's other client
        # (the aws CLI in a workflow step): it does not contradict; another runtime, a
        # person or a finding elsewhere does.
        contradicting = count < sum(votes.values()) or interactive
        agrees = not written or set(written) == {runtime}
        if not contradicting and agrees:
            if runtime == Runtime.ECS and _only_ecs_on_ec2(signals) and not written:
                return runtime, Confidence.MEDIUM  # CodeBuild reports AWS_ECS_EC2 too
            return runtime, Confidence.HIGH
        return runtime, Confidence.MEDIUM if count * 2 > total else Confidence.LOW
    if written:
        runtime = written.most_common(1)[0][0]
        return runtime, Confidence.MEDIUM if len(written) == 1 else Confidence.LOW
    plain = [(u, s) for u, s in signals if s.kind == "plain"]
    if plain and len(plain) == total:
        public = {_is_public(u.source_ip) for u, _ in plain}
        addresses = {u.source_ip for u, _ in plain}
        networks = {_network(u.source_ip) for u, _ in plain}
        if all(s.runtime == Runtime.EC2 for _, s in plain):
            # An Amazon Linux host calling from one private network: an instance in a VPC.
            one_vpc = public == {False} and len(networks) == 1
            return Runtime.EC2, Confidence.MEDIUM if one_vpc else Confidence.LOW
        if any(s.runtime == Runtime.EC2 for _, s in plain):
            return Runtime.EC2, Confidence.LOW
        if len(networks) > 2:
            # The same plain SDK from networks that change: nothing places it.
            return Runtime.UNKNOWN, Confidence.LOW
        if public == {True} and len(addresses) <= 3:
            return Runtime.ON_PREMISES, Confidence.LOW
        if public == {False}:
            return Runtime.EC2, Confidence.LOW  # private addresses: a VPC endpoint's callers
    if total and not interactive:
        return Runtime.UNKNOWN, Confidence.LOW
    return Runtime.UNKNOWN, Confidence.NONE


def _network(address: str | None) -> str:
    """The /16 an IPv4 address is in (the whole address otherwise): hosts of one VPC or site."""
    parts = (address or "").split(".")
    return ".".join(parts[:2]) if len(parts) == 4 else (address or "")


def _only_ecs_on_ec2(signals: list[tuple[KeyUse, Signal]]) -> bool:
    tokens = {s.token.upper() for _, s in signals if s.runtime == Runtime.ECS}
    return tokens == {"EXEC-ENV/AWS_ECS_EC2"}
