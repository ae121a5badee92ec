"""Terraform configuration of what a migration made: pure records in, HCL text out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from domain.export_records import (
    AssignmentRecord,
    ExportRecords,
    InstanceProfileRecord,
    OidcProviderRecord,
    PermissionSetRecord,
    RoleAttachmentRecord,
    RolePolicyRecord,
    RoleRecord,
    WorkloadRecord,
)

HEADER = (
    "Written by `iamc export terraform` from migration {name}: what it created or adopted,\n"
    "as it is in AWS now. Terraform >= 1.5 imports it from the import blocks on `terraform plan`."
)

# Terraform ≥ 1.5 imports from configuration: `import { to = ADDRESS  id = "..." }`.
# Identifiers: a letter or underscore first, then letters, digits, underscores and dashes
# (Terraform language, "Identifiers").
_IDENT_BAD = re.compile(r"[^a-zA-Z0-9_-]+")


@dataclass(frozen=True)
class Expr:
    """A raw HCL expression written as is (a reference, or ``jsonencode(...)``)."""

    text: str


@dataclass(frozen=True)
class Block:
    """A nested block of a resource (``assume_role { ... }``)."""

    name: str
    attributes: dict[str, Any]
    # Blocks inside this one (``permissions_boundary { customer_managed_policy_reference {} }``).
    blocks: list[Block] = field(default_factory=list)


@dataclass
class TfResource:
    """One resource, its import id and the provider alias it needs (None: the default)."""

    type: str
    name: str
    attributes: dict[str, Any]
    import_id: str | None = None
    provider: str | None = None
    blocks: list[Block] = field(default_factory=list)


def quote(value: str) -> str:
    """An HCL string literal: quotes, backslashes and control characters escaped, and
    ``${`` / ``%{`` written ``$${`` / ``%%{`` so Terraform reads them as text, not a template."""
    out = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    text = "".join(out).replace("${", "$${").replace("%{", "%%{")
    return f'"{text}"'


def value(data: Any, indent: int = 0) -> str:
    """Python data (str, bool, int, float, None, list, dict, :class:`Expr`) as an HCL value."""
    pad = "  " * (indent + 1)
    if isinstance(data, Expr):
        return data.text
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, int | float):
        return json.dumps(data)
    if isinstance(data, str):
        return quote(data)
    if isinstance(data, list | tuple):
        if not data:
            return "[]"
        items = "".join(f"{pad}{value(item, indent + 1)},\n" for item in data)
        return f"[\n{items}{'  ' * indent}]"
    if isinstance(data, dict):
        if not data:
            return "{}"
        items = "".join(f"{pad}{quote(str(k))} = {value(v, indent + 1)}\n" for k, v in data.items())
        return f"{{\n{items}{'  ' * indent}}}"
    raise TypeError(f"no HCL value for {type(data).__name__}")


def jsonencode(document: Any) -> Expr:
    """``jsonencode({...})`` of a policy document, so the plan compares documents, not text."""
    return Expr(f"jsonencode({value(document, 1)})")


def identifier(*parts: str) -> str:
    """A valid Terraform name from free text: ``Admins``/``1234`` -> ``admins_1234``."""
    text = "_".join(_IDENT_BAD.sub("_", p).strip("_") for p in parts if p).lower()
    text = re.sub(r"_+", "_", text) or "unnamed"
    return text if re.match(r"[a-z_]", text) else f"_{text}"


def unique_names(resources: list[TfResource]) -> list[TfResource]:
    """Resources renamed where two of one type share a name: ``x``, ``x_2``, ``x_3`` in order."""
    seen: dict[tuple[str, str], int] = {}
    for resource in resources:
        key = (resource.type, resource.name)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            resource.name = f"{resource.name}_{seen[key]}"
    return resources


def _attributes(attributes: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    return [f"{pad}{k} = {value(v, indent)}" for k, v in attributes.items() if v is not None]


def _block(block: Block, indent: int) -> list[str]:
    pad = "  " * indent
    inner = [line for child in block.blocks for line in _block(child, indent + 1)]
    return [f"{pad}{block.name} {{", *_attributes(block.attributes, indent + 1), *inner, f"{pad}}}"]


def render_resource(resource: TfResource) -> str:
    """One ``import`` block (when it has an id) and its ``resource`` block."""
    address = f"{resource.type}.{resource.name}"
    lines = []
    if resource.import_id is not None:
        lines += ["import {", f"  to = {address}", f"  id = {quote(resource.import_id)}"]
        if resource.provider:
            lines.append(f"  provider = {resource.provider}")
        lines += ["}", ""]
    lines.append(f'resource "{resource.type}" "{resource.name}" {{')
    if resource.provider:
        lines.append(f"  provider = {resource.provider}")
    lines += _attributes(resource.attributes, 1)
    for block in resource.blocks:
        lines += _block(block, 1)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_file(resources: list[TfResource], header: str, comments: list[str] = ()) -> str:
    """A ``.tf`` file: a header comment, notes as comments, then every resource."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"# {c}" for c in comments]
    return "\n".join([*lines, "", *(render_resource(r) for r in resources)])


def provider_alias(account_id: str) -> str:
    return f"acct_{account_id}"


def render_providers(account_ids: list[str], member_role: str, region: str | None) -> str:
    """The default provider (the management account) and one aliased provider per member
    account that assumes ``member_role`` there."""
    default = {"region": region} if region else {}
    lines = ['provider "aws" {', *_attributes(default, 1), "}", ""]
    for account_id in sorted(set(account_ids)):
        lines += [
            'provider "aws" {',
            f"  alias = {quote(provider_alias(account_id))}",
            *_attributes(default, 1),
            "  assume_role {",
            f"    role_arn = {quote(f'arn:aws:iam::{account_id}:role/{member_role}')}",
            "  }",
            "}",
            "",
        ]
    return "\n".join(lines)


# -- the migration's records as resources --------------------------------------------------------


def terraform_files(records: ExportRecords) -> tuple[dict[str, str], dict[str, int]]:
    """The ``.tf`` files (name -> text) of what a migration made, and resources by type.

    Roles live in member accounts: their resources and imports go through one aliased
    provider per account (``providers.tf``), which assumes the spec's member role there.
    """
    instance = records.instance_arn
    sets = [r for ps in records.permission_sets for r in _permission_set_resources(ps, instance)]
    assignments = [_assignment_resource(a, instance) for a in records.assignments]
    roles = []
    for record in records.workloads:
        resource = _workload_resource(record)
        resource.provider = f"aws.{provider_alias(record.account_id)}"
        roles.append(resource)
    order = ("aws_iam_openid_connect_provider", "aws_iam_role", "aws_iam_role_policy")
    roles.sort(key=lambda r: (order.index(r.type) if r.type in order else 3, r.name))
    header = HEADER.format(name=records.migration)
    files = {
        "providers.tf": render_providers(
            records.workload_accounts(), records.member_role, records.region
        ),
        "permission_sets.tf": render_file(unique_names(sets), header),
        "assignments.tf": render_file(unique_names(assignments), header),
        "workload_roles.tf": render_file(
            unique_names(roles), header, [note for _, note in records.workload_notes]
        ),
    }
    counts: dict[str, int] = {}
    for resource in [*sets, *assignments, *roles]:
        counts[resource.type] = counts.get(resource.type, 0) + 1
    return files, counts


def _permission_set_resources(found: PermissionSetRecord, instance: str) -> list[TfResource]:
    name, arn = found.name, found.arn
    base = identifier(name)
    ids = f"{arn},{instance}"
    resources = [
        TfResource(
            "aws_ssoadmin_permission_set",
            base,
            {
                "name": name,
                "description": found.description or None,
                "session_duration": found.session_duration,
                "relay_state": found.relay_state,
                "instance_arn": instance,
                # Read live (ListTagsForResource): left out, `terraform plan` would remove them.
                "tags": found.tags or None,
            },
            import_id=ids,
        )
    ]
    if found.inline_policy is not None:
        resources.append(
            TfResource(
                "aws_ssoadmin_permission_set_inline_policy",
                base,
                {
                    "inline_policy": jsonencode(found.inline_policy),
                    "instance_arn": instance,
                    "permission_set_arn": arn,
                },
                import_id=ids,
            )
        )
    for policy_arn in found.aws_managed_policy_arns:
        resources.append(
            TfResource(
                "aws_ssoadmin_managed_policy_attachment",
                identifier(name, policy_arn.rsplit("/", 1)[-1]),
                {
                    "instance_arn": instance,
                    "managed_policy_arn": policy_arn,
                    "permission_set_arn": arn,
                },
                import_id=f"{policy_arn},{ids}",
            )
        )
    for ref in found.customer_managed_policies:
        resources.append(
            TfResource(
                "aws_ssoadmin_customer_managed_policy_attachment",
                identifier(name, ref["name"]),
                {"instance_arn": instance, "permission_set_arn": arn},
                import_id=f"{ref['name']},{ref['path']},{ids}",
                blocks=[Block("customer_managed_policy_reference", dict(ref))],
            )
        )
    if found.permissions_boundary is not None:
        resources.append(
            TfResource(
                "aws_ssoadmin_permissions_boundary_attachment",
                base,
                {"instance_arn": instance, "permission_set_arn": arn},
                # The provider's import id: PERMISSION_SET_ARN,INSTANCE_ARN.
                import_id=ids,
                blocks=[_boundary_block(found.permissions_boundary)],
            )
        )
    return resources


def _boundary_block(boundary: dict[str, Any]) -> Block:
    """``permissions_boundary { managed_policy_arn }`` or its customer-managed reference."""
    if "managed_policy_arn" in boundary:
        return Block("permissions_boundary", {"managed_policy_arn": boundary["managed_policy_arn"]})
    ref = boundary["customer_managed_policy_reference"]
    reference = {"name": ref["name"], "path": ref.get("path") or "/"}
    return Block(
        "permissions_boundary", {}, [Block("customer_managed_policy_reference", reference)]
    )


def _assignment_resource(a: AssignmentRecord, instance: str) -> TfResource:
    arn = a.permission_set_arn
    return TfResource(
        "aws_ssoadmin_account_assignment",
        identifier(a.permission_set_name, a.account_id, a.principal_name),
        {
            "instance_arn": instance,
            "permission_set_arn": arn,
            "principal_id": a.principal_id,
            "principal_type": a.principal_type,
            "target_id": a.account_id,
            "target_type": "AWS_ACCOUNT",
        },
        import_id=(
            f"{a.principal_id},{a.principal_type},{a.account_id},AWS_ACCOUNT,{arn},{instance}"
        ),
    )


def _workload_resource(record: WorkloadRecord) -> TfResource:
    account_id = record.account_id
    if isinstance(record, OidcProviderRecord):
        return TfResource(
            "aws_iam_openid_connect_provider",
            identifier(account_id, record.url.removeprefix("https://")),
            {
                "url": record.url,
                "client_id_list": list(record.client_id_list),
                "thumbprint_list": list(record.thumbprint_list),
                "tags": record.tags or None,
            },
            import_id=record.arn,
        )
    if isinstance(record, RoleRecord):
        return TfResource(
            "aws_iam_role",
            identifier(account_id, record.name),
            {
                "name": record.name,
                "path": record.path,
                "assume_role_policy": jsonencode(record.assume_role_policy),
                "description": record.description or None,
                "max_session_duration": record.max_session_duration,
                "permissions_boundary": record.permissions_boundary,
                # What iamc tagged it with: left out, `terraform plan` would remove them.
                "tags": record.tags or None,
            },
            import_id=record.name,
        )
    if isinstance(record, RolePolicyRecord):
        return TfResource(
            "aws_iam_role_policy",
            identifier(account_id, record.role, record.name),
            {"name": record.name, "role": record.role, "policy": jsonencode(record.document)},
            import_id=f"{record.role}:{record.name}",
        )
    if isinstance(record, RoleAttachmentRecord):
        return TfResource(
            "aws_iam_role_policy_attachment",
            identifier(account_id, record.role, record.policy_arn.rsplit("/", 1)[-1]),
            {"role": record.role, "policy_arn": record.policy_arn},
            import_id=f"{record.role}/{record.policy_arn}",
        )
    if not isinstance(record, InstanceProfileRecord):
        raise TypeError(f"no Terraform resource for {type(record).__name__}")
    return TfResource(
        "aws_iam_instance_profile",
        identifier(account_id, record.name),
        {
            "name": record.name,
            "path": record.path,
            "role": record.roles[0] if record.roles else None,
            "tags": record.tags or None,
        },
        import_id=record.name,
    )
