"""Terraform configuration of what a migration made: pure records in, HCL text out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

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
