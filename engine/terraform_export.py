"""What a migration created or adopted, read live from AWS, as Terraform with import blocks.

The journal says what the migration made (done forward rows of its apply runs); AWS says what
it is now, so ``terraform plan`` after the imports shows no change. No Prefect, no AWS writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.errors import NothingToExport
from domain.terraform_export import (
    Block,
    TfResource,
    identifier,
    jsonencode,
    provider_alias,
    render_file,
    render_providers,
    unique_names,
)
from domain.waves import JournalUse, assignment_key, organization_sets
from domain.workloads import CREATE_INSTANCE_PROFILE, CREATE_WORKLOAD_ROLE
from engine.apply import stage_context
from engine.migration import Migration
from tasks import iam_roles
from tasks.assignments import list_assignments
from tasks.handler import ExecutionContext
from tasks.permission_sets import permission_set_names, read_for_export

log = logging.getLogger(__name__)

PROVISION, REPLACE = "provision", "replace"
HEADER = (
    "Written by `iamc export terraform` from migration {name}: what it created or adopted,\n"
    "as it is in AWS now. Terraform >= 1.5 imports it from the import blocks on `terraform plan`."
)


@dataclass
class TerraformExport:
    """The files written (name -> text) and what was left out, and why."""

    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    role_notes: list[str] = field(default_factory=list)  # written into workload_roles.tf


def _current(uses: list[JournalUse]) -> list[JournalUse]:
    """Done rows that still count: an adoption by a plan rolled back since says nothing."""
    return [u for u in uses if u.done and not (u.released and u.status == "adopted")]


def export_terraform(mig: Migration, out_dir: Path | None = None) -> TerraformExport:
    """Write the migration's permission sets, assignments and workload roles as ``.tf`` files.

    Args:
        mig: The open migration.
        out_dir: Where to write; default ``.iamc/<migration>/terraform`` beside the spec.

    Returns:
        What was written.

    Raises:
        NothingToExport: No apply run of the migration has done anything yet.
        AwsAccessError: AWS can't be read.
    """
    migration_id = mig.store.migrations.find_migration(mig.spec.name)
    uses = [] if migration_id is None else mig.store.waves.journal_uses(migration_id, PROVISION)
    replaced = [] if migration_id is None else mig.store.waves.journal_uses(migration_id, REPLACE)
    uses, replaced = _current(uses), _current(replaced)
    if not uses and not replaced:
        raise NothingToExport(
            f"migration {mig.spec.name!r} has applied nothing yet: run "
            f"`{mig.hint('apply PLAN_ID --stage provision')}` first, then export"
        )
    out = out_dir or mig.directory / ".iamc" / mig.spec.name / "terraform"
    result = TerraformExport(out_dir=out)
    ctx = stage_context(mig.spec, mig.spec_path, None)
    sets, arns = _permission_sets(ctx, uses, result)
    assignments = _assignments(ctx, uses, arns, sets, result)
    roles, accounts = _workload_roles(ctx, replaced, result)
    header = HEADER.format(name=mig.spec.name)
    result.files = {
        "providers.tf": render_providers(accounts, mig.spec.member_role, mig.spec.region),
        "permission_sets.tf": render_file(unique_names(sets), header),
        "assignments.tf": render_file(unique_names(assignments), header),
        "workload_roles.tf": render_file(unique_names(roles), header, result.role_notes),
    }
    for resource in [*sets, *assignments, *roles]:
        result.counts[resource.type] = result.counts.get(resource.type, 0) + 1
    out.mkdir(parents=True, exist_ok=True)
    for name, text in result.files.items():
        (out / name).write_text(text, encoding="utf-8")
    return result


def _permission_sets(
    ctx: ExecutionContext, uses: list[JournalUse], result: TerraformExport
) -> tuple[list[TfResource], dict[str, str]]:
    """Every set the migration created or adopted, with its policies, as it is now."""
    sso, instance = ctx.sso(), ctx.instance.instance_arn
    live = permission_set_names(sso, instance)
    wanted = sorted({known.name for known in organization_sets(uses).values()})
    resources: list[TfResource] = []
    arns: dict[str, str] = {}
    for name in wanted:
        arn = live.get(name)
        if arn is None:
            result.notes.append(f"permission set {name}: in the journal, gone from AWS")
            continue
        arns[name] = arn
        resources += _permission_set_resources(read_for_export(sso, instance, arn), instance)
    return resources, arns


def _permission_set_resources(found: dict[str, Any], instance: str) -> list[TfResource]:
    name, arn = found["name"], found["arn"]
    base = identifier(name)
    ids = f"{arn},{instance}"
    resources = [
        TfResource(
            "aws_ssoadmin_permission_set",
            base,
            {
                "name": name,
                "description": found["description"] or None,
                "session_duration": found["session_duration"],
                "relay_state": found["relay_state"],
                "instance_arn": instance,
            },
            import_id=ids,
        )
    ]
    if found["inline_policy"] is not None:
        resources.append(
            TfResource(
                "aws_ssoadmin_permission_set_inline_policy",
                base,
                {
                    "inline_policy": jsonencode(found["inline_policy"]),
                    "instance_arn": instance,
                    "permission_set_arn": arn,
                },
                import_id=ids,
            )
        )
    for policy_arn in found["aws_managed_policy_arns"]:
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
    for ref in found["customer_managed_policies"]:
        resources.append(
            TfResource(
                "aws_ssoadmin_customer_managed_policy_attachment",
                identifier(name, ref["name"]),
                {"instance_arn": instance, "permission_set_arn": arn},
                import_id=f"{ref['name']},{ref['path']},{ids}",
                blocks=[Block("customer_managed_policy_reference", dict(ref))],
            )
        )
    boundary = found["permissions_boundary"]
    if boundary is not None:
        resources.append(
            TfResource(
                "aws_ssoadmin_permissions_boundary_attachment",
                base,
                {"instance_arn": instance, "permission_set_arn": arn},
                # The provider's import id: PERMISSION_SET_ARN,INSTANCE_ARN.
                import_id=ids,
                blocks=[_boundary_block(boundary)],
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


def _assignments(
    ctx: ExecutionContext,
    uses: list[JournalUse],
    arns: dict[str, str],
    sets: list[TfResource],
    result: TerraformExport,
) -> list[TfResource]:
    """Every assignment the migration created or adopted that is there now."""
    instance = ctx.instance.instance_arn
    keys: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for use in uses:
        if use.kind == "create-assignment":
            keys.setdefault(assignment_key(use.params), use.params)
    resources = []
    for key in sorted(keys):
        account_id, set_name, principal_type, principal_id = key
        arn = arns.get(set_name)
        if arn is None or (principal_type, principal_id) not in list_assignments(
            ctx, account_id, arn
        ):
            result.notes.append(
                f"assignment {principal_type} {principal_id} -> {set_name} in {account_id}: "
                "in the journal, gone from AWS"
            )
            continue
        principal = str(keys[key].get("principal_name") or principal_id)
        resources.append(
            TfResource(
                "aws_ssoadmin_account_assignment",
                identifier(set_name, account_id, principal),
                {
                    "instance_arn": instance,
                    "permission_set_arn": arn,
                    "principal_id": principal_id,
                    "principal_type": principal_type,
                    "target_id": account_id,
                    "target_type": "AWS_ACCOUNT",
                },
                import_id=f"{principal_id},{principal_type},{account_id},AWS_ACCOUNT,{arn},{instance}",
            )
        )
    return resources


def _workload_roles(
    ctx: ExecutionContext, uses: list[JournalUse], result: TerraformExport
) -> tuple[list[TfResource], list[str]]:
    """The replace stage's roles, their policies and profiles, and the OIDC providers it
    created, each through its member account's provider; the accounts they live in."""
    resources: list[TfResource] = []
    accounts: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    for use in sorted(uses, key=lambda u: (u.account_id or "", u.kind, u.target, str(u.params))):
        account_id = use.account_id or ""
        key = (account_id, use.kind, str(sorted(use.params.items())))
        if key in seen:  # the same thing done by two plans (waves)
            continue
        seen.add(key)
        found = _workload_resource(ctx.iam(account_id), account_id, use, result)
        if found is not None:
            found.provider = f"aws.{provider_alias(account_id)}"
            resources.append(found)
            accounts.add(account_id)
    order = ("aws_iam_openid_connect_provider", "aws_iam_role", "aws_iam_role_policy")
    resources.sort(key=lambda r: (order.index(r.type) if r.type in order else 3, r.name))
    return resources, sorted(accounts)


def _workload_resource(
    iam: Any, account_id: str, use: JournalUse, result: TerraformExport
) -> TfResource | None:
    p = use.params
    gone = f"{use.kind} {use.target} in {account_id}: in the journal, gone from AWS"
    if use.kind == "ensure-oidc-provider":
        return _oidc_resource(iam, account_id, use, result, gone)
    role_name = p["role_name"]
    if use.kind == CREATE_WORKLOAD_ROLE:
        role = iam_roles.read_role(iam, role_name)
        if role is None:
            result.notes.append(gone)
            return None
        return TfResource(
            "aws_iam_role",
            identifier(account_id, role_name),
            {
                "name": role["name"],
                "path": role["path"],
                "assume_role_policy": jsonencode(role["assume_role_policy"]),
                "description": role["description"] or None,
                "max_session_duration": role["max_session_duration"],
                "permissions_boundary": role["permissions_boundary"],
                # What iamc tagged it with: left out, `terraform plan` would remove them.
                "tags": role["tags"] or None,
            },
            import_id=role_name,
        )
    if use.kind == "put-role-policy":
        document = iam_roles.read_role_policy(iam, role_name, p["policy_name"])
        if document is None:
            result.notes.append(gone)
            return None
        return TfResource(
            "aws_iam_role_policy",
            identifier(account_id, role_name, p["policy_name"]),
            {"name": p["policy_name"], "role": role_name, "policy": jsonencode(document)},
            import_id=f"{role_name}:{p['policy_name']}",
        )
    if use.kind == "attach-role-policy":
        if p["policy_arn"] not in iam_roles.attached_policy_arns(iam, role_name):
            result.notes.append(gone)
            return None
        return TfResource(
            "aws_iam_role_policy_attachment",
            identifier(account_id, role_name, p["policy_arn"].rsplit("/", 1)[-1]),
            {"role": role_name, "policy_arn": p["policy_arn"]},
            import_id=f"{role_name}/{p['policy_arn']}",
        )
    if use.kind == CREATE_INSTANCE_PROFILE:
        profile = iam_roles.read_instance_profile(iam, p["instance_profile_name"])
        if profile is None:
            result.notes.append(gone)
            return None
        return TfResource(
            "aws_iam_instance_profile",
            identifier(account_id, profile["name"]),
            {
                "name": profile["name"],
                "path": profile["path"],
                "role": profile["roles"][0] if profile["roles"] else None,
                "tags": profile["tags"] or None,
            },
            import_id=profile["name"],
        )
    return None


def _oidc_resource(
    iam: Any, account_id: str, use: JournalUse, result: TerraformExport, gone: str
) -> TfResource | None:
    """The OIDC provider the migration created; one it adopted is someone else's: a note."""
    p = use.params
    provider = iam_roles.read_oidc_provider(iam, p["url"])
    if provider is None:
        result.notes.append(gone)
        return None
    if use.status == "adopted":  # someone else's: Terraform of theirs may own it
        result.role_notes.append(
            f"OIDC provider {provider['arn']} was there before the migration (adopted): "
            "not exported"
        )
        return None
    return TfResource(
        "aws_iam_openid_connect_provider",
        identifier(account_id, p["url"].removeprefix("https://")),
        {
            "url": provider["url"],
            "client_id_list": provider["client_id_list"],
            "thumbprint_list": provider["thumbprint_list"],
            "tags": provider["tags"] or None,
        },
        import_id=provider["arn"],
    )
