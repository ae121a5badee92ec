"""Scan one member account's configuration for hard-coded AWS keys, read-only.

Each source is a function that takes a ``boto3.Session`` in the member account and yields
hits and ignored look-alikes with a location a person can follow
(``account / region / Lambda function NAME (env VAR)``). :func:`scan_account` runs the sources
and turns a source the endpoint does not implement (moto in-process raises
``NotImplementedError``, the sandbox answers HTTP 501 ``NotImplemented``) or refuses into a
:class:`ScanGap`, never a crash. Values are rendered as ``NAME=value`` lines before detection,
so a secret in the variable next to a key id counts as found next to it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import logging
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import boto3
from botocore.exceptions import ClientError

from domain.key_findings import HitSource, IgnoredHit, KeyHit, ScanGap, ScanResult
from scanner.key_detection import KeyDetector
from tasks.aws import pages as _pages

log = logging.getLogger(__name__)

SOURCE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    HitSource.LAMBDA: ("lambda:ListFunctions",),
    HitSource.ECS: ("ecs:ListTaskDefinitions", "ecs:DescribeTaskDefinition"),
    HitSource.EC2_LAUNCH_TEMPLATE: (
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
    ),
    HitSource.EC2_INSTANCE: ("ec2:DescribeInstances", "ec2:DescribeInstanceAttribute"),
    # DescribeParameters then GetParameters of String/StringList names only: a SecureString
    # value is never requested.
    HitSource.SSM: ("ssm:DescribeParameters", "ssm:GetParameters"),
    HitSource.CLOUDFORMATION: ("cloudformation:DescribeStacks", "cloudformation:GetTemplate"),
    HitSource.CODEBUILD: ("codebuild:ListProjects", "codebuild:BatchGetProjects"),
}
READ_PERMISSIONS = tuple(sorted({a for actions in SOURCE_PERMISSIONS.values() for a in actions}))

# A ClientError with one of these codes means "this source can't be read here": a gap.
_NOT_IMPLEMENTED_CODES = frozenset({"NotImplemented", "InvalidAction", "UnknownOperationException"})
# Credentials that are no good fail the whole account, as everywhere else (tasks.aws).
_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "RequestExpired",
    }
)
_MAX_USER_DATA_BYTES = 1024 * 1024  # EC2 caps user data at 16 KB; gzip may inflate it
_NO_ECHO = "****"  # what DescribeStacks shows for a NoEcho parameter

Finding = KeyHit | IgnoredHit
Source = Callable[[boto3.Session, str, KeyDetector, str], Iterator[Finding]]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _detect_entries(
    detector: KeyDetector,
    entries: Iterable[tuple[str, str]],
    where: Callable[[str, int], str],
    source: str,
    account_id: str,
    region: str,
) -> Iterator[Finding]:
    """Detect over entries rendered one after another; locate each finding in its entry.

    Args:
        entries: (label, text) pairs, e.g. (variable name, "NAME=value").
        where: Location of a finding from (label, line within that entry's text).
    """
    labels: list[str] = []
    starts: list[int] = []
    lines: list[str] = []
    for label, text in entries:
        labels.append(label)
        starts.append(len(lines) + 1)
        lines.extend(text.splitlines() or [""])
    if not lines:
        return
    found = detector.scan("\n".join(lines).encode("utf-8", "replace"))
    for finding in [*found.hits, *found.ignored]:
        index = bisect.bisect_right(starts, finding.line) - 1
        location = where(labels[index], finding.line - starts[index] + 1)
        if isinstance(finding, KeyHit):
            yield replace(
                finding, source=source, location=location, account_id=account_id, region=region
            )
        else:
            yield replace(finding, source=source, location=location)


def _variables(
    detector: KeyDetector,
    variables: Iterable[tuple[str, str]],
    prefix: str,
    source: str,
    account_id: str,
    region: str,
    kind: str = "env",
) -> Iterator[Finding]:
    entries = [(name, f"{name}={value}") for name, value in variables]
    yield from _detect_entries(
        detector,
        entries,
        lambda name, _line: f"{prefix} ({kind} {name})",
        source,
        account_id,
        region,
    )


def _text(
    detector: KeyDetector,
    text: str,
    prefix: str,
    what: str,
    source: str,
    account_id: str,
    region: str,
) -> Iterator[Finding]:
    yield from _detect_entries(
        detector,
        [(what, text)],
        lambda label, line: f"{prefix} ({label} line {line})",
        source,
        account_id,
        region,
    )


def _decode_user_data(encoded: str) -> str:
    """EC2 user data arrives base64-encoded; cloud-init also accepts it gzip-compressed."""
    try:
        raw = base64.b64decode(encoded)
    except (binascii.Error, ValueError):
        return encoded
    if raw[:2] == b"\x1f\x8b":
        try:
            inflater = zlib.decompressobj(wbits=31)
            raw = inflater.decompress(raw, _MAX_USER_DATA_BYTES)
        except zlib.error:
            return encoded
    return raw.decode("utf-8", "replace")


# -- sources ----------------------------------------------------------------------------------


def lambda_environment(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """Environment variables of every Lambda function version (published versions keep theirs)."""
    client = session.client("lambda", region_name=region)
    for function in _pages(client, "list_functions", "Functions", FunctionVersion="ALL"):
        variables = (function.get("Environment") or {}).get("Variables") or {}
        version = function.get("Version", "$LATEST")
        name = function["FunctionName"]
        label = name if version == "$LATEST" else f"{name}:{version}"
        yield from _variables(
            detector,
            variables.items(),
            f"{account_id} / {region} / Lambda function {label}",
            HitSource.LAMBDA,
            account_id,
            region,
        )


def ecs_task_definitions(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """Container ``environment`` of every ECS task definition revision, active and inactive."""
    client = session.client("ecs", region_name=region)
    for status in ("ACTIVE", "INACTIVE"):
        for arn in _pages(client, "list_task_definitions", "taskDefinitionArns", status=status):
            definition = client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            family = f"{definition.get('family', arn)}:{definition.get('revision', '?')}"
            for container in definition.get("containerDefinitions", []):
                yield from _variables(
                    detector,
                    [
                        (e.get("name", ""), e.get("value", ""))
                        for e in container.get("environment", [])
                    ],
                    f"{account_id} / {region} / ECS task definition {family} "
                    f"container {container.get('name', '?')}",
                    HitSource.ECS,
                    account_id,
                    region,
                )


def ec2_launch_templates(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """User data of every version of every launch template."""
    client = session.client("ec2", region_name=region)
    for template in _pages(client, "describe_launch_templates", "LaunchTemplates"):
        template_id = template["LaunchTemplateId"]
        name = template.get("LaunchTemplateName", template_id)
        for version in _pages(
            client,
            "describe_launch_template_versions",
            "LaunchTemplateVersions",
            LaunchTemplateId=template_id,
        ):
            user_data = (version.get("LaunchTemplateData") or {}).get("UserData")
            if user_data:
                yield from _text(
                    detector,
                    _decode_user_data(user_data),
                    f"{account_id} / {region} / EC2 launch template {name} "
                    f"version {version.get('VersionNumber', '?')}",
                    "user data",
                    HitSource.EC2_LAUNCH_TEMPLATE,
                    account_id,
                    region,
                )


def ec2_instance_user_data(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """User data of every instance that is not terminated (one DescribeInstanceAttribute each)."""
    client = session.client("ec2", region_name=region)
    for reservation in _pages(client, "describe_instances", "Reservations"):
        for instance in reservation.get("Instances", []):
            if (instance.get("State") or {}).get("Name") == "terminated":
                continue
            instance_id = instance["InstanceId"]
            attribute = client.describe_instance_attribute(
                Attribute="userData", InstanceId=instance_id
            )
            user_data = (attribute.get("UserData") or {}).get("Value")
            if user_data:
                yield from _text(
                    detector,
                    _decode_user_data(user_data),
                    f"{account_id} / {region} / EC2 instance {instance_id}",
                    "user data",
                    HitSource.EC2_INSTANCE,
                    account_id,
                    region,
                )


def ssm_parameters(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """``String``/``StringList`` parameters; SecureString values are never requested."""
    client = session.client("ssm", region_name=region)
    plain = ("String", "StringList")
    names = [
        parameter["Name"]
        for parameter in _pages(
            client,
            "describe_parameters",
            "Parameters",
            ParameterFilters=[{"Key": "Type", "Option": "Equals", "Values": list(plain)}],
        )
        if parameter.get("Type") in plain
    ]
    entries: list[tuple[str, str]] = []
    for chunk in _chunks(names, 10):  # GetParameters takes at most 10 names
        response = client.get_parameters(Names=list(chunk), WithDecryption=False)
        for parameter in response.get("Parameters", []):
            if parameter.get("Type") in plain:
                entries.append((parameter["Name"], f"{parameter['Name']}={parameter['Value']}"))
    yield from _detect_entries(
        detector,
        entries,
        lambda name, _line: f"{account_id} / {region} / SSM parameter {name}",
        HitSource.SSM,
        account_id,
        region,
    )


def cloudformation_stacks(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """Stack parameters (NoEcho ones show ``****`` and are skipped) and each stack's template."""
    client = session.client("cloudformation", region_name=region)
    for stack in _pages(client, "describe_stacks", "Stacks"):
        name = stack["StackName"]
        prefix = f"{account_id} / {region} / CloudFormation stack {name}"
        parameters = [
            (p["ParameterKey"], p.get("ParameterValue", ""))
            for p in stack.get("Parameters", [])
            if p.get("ParameterValue") != _NO_ECHO
        ]
        yield from _variables(
            detector,
            parameters,
            prefix,
            HitSource.CLOUDFORMATION,
            account_id,
            region,
            kind="parameter",
        )
        body = client.get_template(StackName=stack.get("StackId", name))["TemplateBody"]
        # botocore parses a JSON template into a dict; YAML stays a string.
        text = body if isinstance(body, str) else json.dumps(body, indent=1)
        yield from _text(
            detector, text, prefix, "template", HitSource.CLOUDFORMATION, account_id, region
        )


def codebuild_projects(
    session: boto3.Session, account_id: str, detector: KeyDetector, region: str
) -> Iterator[Finding]:
    """``PLAINTEXT`` environment variables of every CodeBuild project."""
    client = session.client("codebuild", region_name=region)
    names = list(_pages(client, "list_projects", "projects"))
    for chunk in _chunks(names, 100):  # BatchGetProjects takes at most 100 names
        for project in client.batch_get_projects(names=list(chunk)).get("projects", []):
            variables = [
                (v.get("name", ""), v.get("value", ""))
                for v in (project.get("environment") or {}).get("environmentVariables", [])
                if v.get("type", "PLAINTEXT") == "PLAINTEXT"
            ]
            yield from _variables(
                detector,
                variables,
                f"{account_id} / {region} / CodeBuild project {project['name']}",
                HitSource.CODEBUILD,
                account_id,
                region,
            )


SOURCES: dict[str, Source] = {
    HitSource.LAMBDA: lambda_environment,
    HitSource.ECS: ecs_task_definitions,
    HitSource.EC2_LAUNCH_TEMPLATE: ec2_launch_templates,
    HitSource.EC2_INSTANCE: ec2_instance_user_data,
    HitSource.SSM: ssm_parameters,
    HitSource.CLOUDFORMATION: cloudformation_stacks,
    HitSource.CODEBUILD: codebuild_projects,
}


class _CallCounter:
    """Counts API calls made through a session while a source runs (for the report)."""

    def __init__(self, session: boto3.Session):
        self.session = session
        self.calls: dict[str, int] = {}
        self.unique_id = f"iamc-key-scan-{uuid.uuid4()}"

    def __enter__(self) -> _CallCounter:
        self.session.events.register("before-call", self._count, unique_id=self.unique_id)
        return self

    def __exit__(self, *_: object) -> None:
        self.session.events.unregister("before-call", unique_id=self.unique_id)

    def _count(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}:{model.name}"
        self.calls[name] = self.calls.get(name, 0) + 1


def _gap_reason(err: ClientError) -> str | None:
    """Why a ClientError makes the source a gap, or None if it must propagate."""
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _CREDENTIAL_CODES:
        return None
    if code in _NOT_IMPLEMENTED_CODES or status == 501:
        return "not implemented by this endpoint"
    return f"{code}: {error.get('Message', '')}".strip()


def scan_account(
    session: boto3.Session,
    account_id: str,
    *,
    detector: KeyDetector | None = None,
    salt: bytes | None = None,
    sources: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
) -> ScanResult:
    """Run the AWS-side sources in one member account.

    Args:
        session: A session in the member account (the member role).
        account_id: The member account, for locations and gaps.
        detector: The scan's detector (shares the salt with the code scan); else a new one.
        salt: Salt for a new detector.
        sources: Names from :data:`SOURCES` (default: all).
        regions: Regions to read (default: the session's region).

    Returns:
        Hits and ignored look-alikes, a gap per source that could not be read (completely),
        and the API calls made per operation in ``stats.calls``.

    Raises:
        ClientError: The account's credentials were refused (expired, invalid); the caller
            maps it as for every other account task.
    """
    detector = detector or KeyDetector(salt)
    result = ScanResult()
    for region in regions or [session.region_name or "us-east-1"]:
        for name in sources or list(SOURCES):
            source = SOURCES[name]
            with _CallCounter(session) as counter:
                try:
                    for finding in source(session, account_id, detector, region):
                        if isinstance(finding, KeyHit):
                            result.hits.append(finding)
                        else:
                            result.ignored.append(finding)
                except NotImplementedError as err:
                    # moto in-process raises this for operations it lacks.
                    result.gaps.append(
                        ScanGap(account_id, str(name), "?", f"not implemented: {err}", region)
                    )
                except ClientError as err:
                    reason = _gap_reason(err)
                    if reason is None:
                        raise
                    operation = err.operation_name
                    result.gaps.append(ScanGap(account_id, str(name), operation, reason, region))
            for operation, count in counter.calls.items():
                result.stats.calls[operation] = result.stats.calls.get(operation, 0) + count
    for gap in result.gaps:
        log.warning("%s", gap)
    log.info(
        "account %s: %d key hits, %d ignored, %d gaps",
        account_id,
        len(result.hits),
        len(result.ignored),
        len(result.gaps),
    )
    return result
