"""CloudFormation templates of what a migration made: pure records in, JSON text out.

One template for the Identity Center admin account (permission sets and assignments are
sso-admin resources there) and one per member account that holds workload roles (IAM is per
account), each with the resources-to-import file of
``aws cloudformation create-change-set --change-set-type IMPORT``. Every resource keeps
``DeletionPolicy: Retain`` (required for import, "Import AWS resources into a CloudFormation
stack": https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/resource-import.html),
so deleting a stack later never deletes anyone's access.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from domain.access import boundary_as_api
from domain.export_records import (
    AssignmentRecord,
    ExportRecords,
    InstanceProfileRecord,
    OidcProviderRecord,
    PermissionSetRecord,
    RoleAttachmentRecord,
    RolePolicyRecord,
    RoleRecord,
)

IDENTITY_CENTER = "identity-center.json"
# Logical ids: alphanumeric, unique in the template (template anatomy, "Resources"); at most
# 255 characters.
MAX_LOGICAL_ID = 255
_WORD = re.compile(r"[A-Za-z0-9]+")
# CloudFormation quotas (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/
# cloudformation-limits.html): resources declared in one template; template body passed inline.
MAX_RESOURCES = 500
MAX_TEMPLATE_BODY = 51_200
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}


@dataclass
class CfnResource:
    """One resource: the words its logical id is made of, and its import identifier.

    ``identifier`` holds the type's ``primaryIdentifier`` properties (its resource schema);
    ``ref_of`` names another resource whose ``PermissionSetArn`` this one reads (GetAtt)."""

    id_parts: tuple[str, ...]
    type: str
    properties: dict[str, Any]
    identifier: dict[str, str]
    logical_id: str = ""
    ref_of: dict[str, tuple[str, ...]] = field(default_factory=dict)


def member_template(account_id: str) -> str:
    return f"member-{account_id}.json"


def import_file(template: str) -> str:
    return template.removesuffix(".json") + ".import.json"


def logical_id(*parts: str) -> str:
    """A valid, stable logical id from free text: ``("Assignment", "read-only", "alice@x.io")``
    -> ``AssignmentReadOnlyAliceXIo``; longer than 255 characters, cut and a digest added."""
    words = [w for part in parts for w in _WORD.findall(part)]
    text = "".join(w[:1].upper() + w[1:] for w in words) or "Resource"
    if not text[0].isalpha():
        text = f"R{text}"
    if len(text) > MAX_LOGICAL_ID:
        text = text[: MAX_LOGICAL_ID - 8] + _digest(parts)
    return text


def _digest(parts: tuple[str, ...]) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:8]


def assign_logical_ids(resources: list[CfnResource]) -> list[CfnResource]:
    """Give each resource its logical id; where two would share one (``a-b`` and ``a.b``),
    each of them takes a digest of its own words, so the ids depend on no order."""
    ids = [logical_id(*r.id_parts) for r in resources]
    clashes = Counter(ids)
    for resource, text in zip(resources, ids, strict=True):
        if clashes[text] > 1:
            text = text[: MAX_LOGICAL_ID - 8] + _digest(resource.id_parts)
        resource.logical_id = text
    return resources


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": tags[k]} for k in sorted(tags)]


def _some(properties: dict[str, Any]) -> dict[str, Any]:
    """Properties without the empty ones: an absent property is what AWS reports as unset."""
    return {k: v for k, v in properties.items() if v not in (None, "", [], {})}


# -- Identity Center --------------------------------------------------------------------------


def permission_set_resource(ps: PermissionSetRecord, instance: str) -> CfnResource:
    """``AWS::SSO::PermissionSet``; imported by InstanceArn and PermissionSetArn."""
    return CfnResource(
        ("PermissionSet", ps.name),
        "AWS::SSO::PermissionSet",
        _some(
            {
                "InstanceArn": instance,
                "Name": ps.name,
                "Description": ps.description,
                "SessionDuration": ps.session_duration,
                "RelayStateType": ps.relay_state,
                # An object, not a string: CloudFormation compares documents, not whitespace.
                "InlinePolicy": ps.inline_policy,
                "ManagedPolicies": list(ps.aws_managed_policy_arns),
                "CustomerManagedPolicyReferences": [
                    {"Name": r["name"], "Path": r.get("path") or "/"}
                    for r in ps.customer_managed_policies
                ],
                "PermissionsBoundary": (
                    boundary_as_api(ps.permissions_boundary) if ps.permissions_boundary else None
                ),
                "Tags": _tags(ps.tags),
            }
        ),
        {"InstanceArn": instance, "PermissionSetArn": ps.arn},
    )


def assignment_resource(a: AssignmentRecord, instance: str) -> CfnResource:
    """``AWS::SSO::Assignment``, its set's ARN read from the set's resource (GetAtt)."""
    return CfnResource(
        ("Assignment", a.permission_set_name, a.account_id, a.principal_type, a.principal_name),
        "AWS::SSO::Assignment",
        {
            "InstanceArn": instance,
            "PermissionSetArn": None,  # filled with Fn::GetAtt once ids are given
            "PrincipalType": a.principal_type,
            "PrincipalId": a.principal_id,
            "TargetType": "AWS_ACCOUNT",
            "TargetId": a.account_id,
        },
        {
            "InstanceArn": instance,
            "PermissionSetArn": a.permission_set_arn,
            "PrincipalId": a.principal_id,
            "PrincipalType": a.principal_type,
            "TargetId": a.account_id,
            "TargetType": "AWS_ACCOUNT",
        },
        ref_of={"PermissionSetArn": ("PermissionSet", a.permission_set_name)},
    )


# -- member accounts --------------------------------------------------------------------------


def role_resource(
    role: RoleRecord, policies: list[RolePolicyRecord], attached: list[RoleAttachmentRecord]
) -> CfnResource:
    """``AWS::IAM::Role`` with the inline policies and attachments the migration made."""
    return CfnResource(
        ("Role", role.name),
        "AWS::IAM::Role",
        _some(
            {
                "RoleName": role.name,
                "Path": role.path,
                "AssumeRolePolicyDocument": role.assume_role_policy,
                "Description": role.description,
                "MaxSessionDuration": role.max_session_duration,
                "PermissionsBoundary": role.permissions_boundary,
                "Policies": [
                    {"PolicyName": p.name, "PolicyDocument": p.document}
                    for p in sorted(policies, key=lambda p: p.name)
                ],
                "ManagedPolicyArns": sorted(a.policy_arn for a in attached),
                "Tags": _tags(role.tags),
            }
        ),
        {"RoleName": role.name},
    )


def instance_profile_resource(profile: InstanceProfileRecord, roles: set[str]) -> CfnResource:
    """``AWS::IAM::InstanceProfile``; its role by Ref when the role is in the same template."""
    return CfnResource(
        ("InstanceProfile", profile.name),
        "AWS::IAM::InstanceProfile",
        {
            "InstanceProfileName": profile.name,
            "Path": profile.path,
            "Roles": [{"Ref": logical_id("Role", r)} if r in roles else r for r in profile.roles],
        },
        {"InstanceProfileName": profile.name},
    )


def oidc_provider_resource(provider: OidcProviderRecord) -> CfnResource:
    """``AWS::IAM::OIDCProvider``; imported by its ARN."""
    return CfnResource(
        ("OidcProvider", provider.url.removeprefix("https://")),
        "AWS::IAM::OIDCProvider",
        _some(
            {
                "Url": provider.url,
                "ClientIdList": list(provider.client_id_list),
                "ThumbprintList": list(provider.thumbprint_list),
                "Tags": _tags(provider.tags),
            }
        ),
        {"Arn": provider.arn},
    )


def _member_resources(
    records: ExportRecords, account_id: str, notes: list[str]
) -> list[CfnResource]:
    mine = [w for w in records.workloads if w.account_id == account_id]
    roles = {w.name for w in mine if isinstance(w, RoleRecord)}
    resources = [oidc_provider_resource(w) for w in mine if isinstance(w, OidcProviderRecord)]
    for role in (w for w in mine if isinstance(w, RoleRecord)):
        policies = [w for w in mine if isinstance(w, RolePolicyRecord) and w.role == role.name]
        attached = [w for w in mine if isinstance(w, RoleAttachmentRecord) and w.role == role.name]
        resources.append(role_resource(role, policies, attached))
    for w in mine:
        if isinstance(w, RolePolicyRecord | RoleAttachmentRecord) and w.role not in roles:
            what = w.name if isinstance(w, RolePolicyRecord) else w.policy_arn
            notes.append(
                f"{what} on role {w.role}: the role is not the migration's (or is gone), "
                "so there is no role resource to hold it: not exported"
            )
        if isinstance(w, InstanceProfileRecord):
            resources.append(instance_profile_resource(w, roles))
            if w.tags:
                # AWS::IAM::InstanceProfile has no Tags property (its resource schema): the
                # stack leaves them as they are.
                notes.append(
                    f"instance profile {w.name} keeps its tags {sorted(w.tags)} outside the "
                    "template (AWS::IAM::InstanceProfile has no Tags property)"
                )
    return resources


# -- templates --------------------------------------------------------------------------------


def stack_name(migration: str, part: str) -> str:
    """A valid stack name: a letter first, then letters, digits and dashes, ≤ 128."""
    text = re.sub(r"[^A-Za-z0-9-]+", "-", f"iamc-{migration}-{part}").strip("-")
    return re.sub(r"-+", "-", text)[:128]


def template(
    resources: list[CfnResource], description: str, notes: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A template (every resource retained on delete) and its resources-to-import list."""
    assign_logical_ids(resources)
    by_parts = {r.id_parts: r.logical_id for r in resources}
    body: dict[str, Any] = {}
    imports = []
    for r in resources:
        properties = dict(r.properties)
        for name, parts in r.ref_of.items():
            properties[name] = {"Fn::GetAtt": [by_parts[parts], name]}
        body[r.logical_id] = {"Type": r.type, **RETAIN, "Properties": properties}
        imports.append(
            {
                "ResourceType": r.type,
                "LogicalResourceId": r.logical_id,
                "ResourceIdentifier": dict(r.identifier),
            }
        )
    document: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description[:1024],
    }
    if notes:
        document["Metadata"] = {"iamc": {"notes": notes}}
    document["Resources"] = body
    return document, imports


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def cloudformation_files(records: ExportRecords) -> tuple[dict[str, str], dict[str, int]]:
    """The templates and import files (name -> text) of what a migration made, a README
    with the commands that import them, and resources by type.

    Returns:
        ``identity-center.json`` and ``member-ACCOUNT.json`` (one per account with workload
        roles), each with its ``.import.json``, and ``README.md``; counts by resource type.
    """
    instance = records.instance_arn
    sets = [permission_set_resource(ps, instance) for ps in records.permission_sets]
    assignments = [assignment_resource(a, instance) for a in records.assignments]
    stacks: dict[str, tuple[str, list[CfnResource], list[str]]] = {
        IDENTITY_CENTER: ("identity-center", [*sets, *assignments], []),
    }
    for account_id in records.workload_accounts():
        notes = [note for where, note in records.workload_notes if where == account_id]
        resources = _member_resources(records, account_id, notes)
        stacks[member_template(account_id)] = (f"member-{account_id}", resources, notes)
    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    readme = [
        f"# CloudFormation import of migration {records.migration}",
        "",
        "Written by `iamc export cloudformation` from what the migration created or adopted,",
        "as it is in AWS now. Every resource is `DeletionPolicy: Retain`: deleting a stack",
        "leaves the access in place. Create each stack by importing (in its account):",
        "",
    ]
    for name, (part, resources, notes) in stacks.items():
        if not resources:  # a template declares at least one resource
            continue
        where = (
            "the Identity Center administrator account (management or delegated admin)"
            if name == IDENTITY_CENTER
            else f"account {part.removeprefix('member-')}, through role {records.member_role}"
        )
        document, imports = template(
            resources,
            f"iamc migration {records.migration}: what it made in {where}",
            notes,
        )
        files[name], files[import_file(name)] = _dump(document), _dump(imports)
        for r in resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        readme += _readme_lines(records, name, part, where, len(resources), len(files[name]))
    if records.workload_notes:
        readme += ["## Left out", "", *(f"- {note}" for _, note in records.workload_notes), ""]
    files["README.md"] = "\n".join(readme) + "\n"
    return files, counts


def _readme_lines(
    records: ExportRecords, name: str, part: str, where: str, count: int, size: int
) -> list[str]:
    region = f" --region {records.region}" if records.region else ""
    lines = [
        f"## {name} — in {where}",
        "",
        "```sh",
        "aws cloudformation create-change-set --change-set-type IMPORT"
        f" --stack-name {stack_name(records.migration, part)}"
        f" --change-set-name iamc-import --template-body file://{name}"
        f" --resources-to-import file://{import_file(name)}{region}",
        "```",
        "",
    ]
    if count > MAX_RESOURCES:
        lines += [
            f"**{count} resources: over CloudFormation's {MAX_RESOURCES} per template.** Split "
            "the template (and its import file) before importing.",
            "",
        ]
    if size > MAX_TEMPLATE_BODY:
        lines += [
            f"The template is {size} bytes, over the {MAX_TEMPLATE_BODY} bytes "
            "`--template-body` takes: upload it to S3 and pass `--template-url`.",
            "",
        ]
    return lines
