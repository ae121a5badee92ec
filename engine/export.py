"""What a migration created or adopted, read once from the journal and live AWS, written as
Terraform (``.tf`` with import blocks) or CloudFormation (templates with an import file).

The journal says what the migration made (done forward rows of its apply runs); AWS says what
it is now, so ``terraform plan`` after the imports, or drift detection after a CloudFormation
import, shows no change. Both writers take the same records (``domain.export_records``): AWS
is read once. No Prefect, no AWS writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from domain import cloudformation_export, terraform_export
from domain.errors import NothingToExport
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
from domain.waves import JournalUse, Owned, current_uses, owned
from domain.workloads import CREATE_INSTANCE_PROFILE, CREATE_WORKLOAD_ROLE
from engine.apply import stage_context
from engine.migration import Migration
from tasks import iam_roles
from tasks.assignments import assignments_of
from tasks.handler import ExecutionContext
from tasks.permission_sets import permission_set_names, read_for_export

log = logging.getLogger(__name__)

PROVISION, REPLACE = "provision", "replace"
Format = Literal["terraform", "cloudformation"]


@dataclass
class ExportResult:
    """The files written (name -> text), resources by type, and what was left out, and why."""

    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def export_terraform(mig: Migration, out_dir: Path | None = None) -> ExportResult:
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
    return export(mig, "terraform", out_dir)


def export_cloudformation(mig: Migration, out_dir: Path | None = None) -> ExportResult:
    """Write the same as CloudFormation: ``identity-center.json`` (the Identity Center admin
    account's stack), one ``member-ACCOUNT.json`` per member account with workload roles, and
    beside each its ``*.import.json`` for ``create-change-set --change-set-type IMPORT``.

    Args and Raises as :func:`export_terraform`; default directory
    ``.iamc/<migration>/cloudformation``.
    """
    return export(mig, "cloudformation", out_dir)


_WRITERS: dict[str, Callable[[ExportRecords], tuple[dict[str, str], dict[str, int]]]] = {
    "terraform": terraform_export.terraform_files,
    "cloudformation": cloudformation_export.cloudformation_files,
}


def export(mig: Migration, fmt: Format, out_dir: Path | None = None) -> ExportResult:
    """Read what the migration made once, write it in ``fmt``; see :func:`export_terraform`.

    Raises:
        NotForThisTarget: The spec's target is ``central-roles`` (Identity Center only).
    """
    mig.spec.identity_center_only(f"iamc export {fmt}", f"{fmt} export")
    records = read_export(mig)
    out = out_dir or mig.directory / ".iamc" / mig.spec.name / fmt
    files, counts = _WRITERS[fmt](records)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    return ExportResult(out_dir=out, files=files, counts=counts, notes=list(records.notes))


def read_export(mig: Migration) -> ExportRecords:
    """What the journal says the migration created or adopted, as it is in AWS now.

    Raises:
        NothingToExport: No apply run of the migration has done anything yet.
        AwsAccessError: AWS can't be read.
    """
    migration_id = mig.store.migrations.find_migration(mig.spec.name)
    uses = [] if migration_id is None else mig.store.waves.journal_uses(migration_id, PROVISION)
    replaced = [] if migration_id is None else mig.store.waves.journal_uses(migration_id, REPLACE)
    ours, replaced = owned(uses), current_uses(replaced)
    if not ours and not replaced:
        raise NothingToExport(
            f"migration {mig.spec.name!r} has applied nothing yet: run "
            f"`{mig.hint('apply PLAN_ID --stage provision')}` first, then export"
        )
    ctx = stage_context(mig.spec, mig.spec_path, None)
    records = ExportRecords(
        migration=mig.spec.name,
        instance_arn=ctx.instance.instance_arn,
        region=mig.spec.region,
        member_role=mig.spec.member_role,
    )
    records.permission_sets = _permission_sets(ctx, ours, records)
    records.assignments = _assignments(ctx, ours, records)
    records.workloads = _workloads(ctx, replaced, records)
    return records


def _permission_sets(
    ctx: ExecutionContext, ours: Owned, records: ExportRecords
) -> list[PermissionSetRecord]:
    """Every set the migration created or adopted, with its policies and tags, as it is now."""
    sso, instance = ctx.sso(), ctx.instance.instance_arn
    live = permission_set_names(sso, instance)
    found = []
    for name in sorted(ours.sets):
        arn = live.get(name)
        if arn is None:
            records.notes.append(f"permission set {name}: in the journal, gone from AWS")
            continue
        read = read_for_export(sso, instance, arn)
        found.append(
            PermissionSetRecord(
                name=read["name"],
                arn=arn,
                description=read["description"],
                session_duration=read["session_duration"],
                relay_state=read["relay_state"],
                inline_policy=read["inline_policy"],
                aws_managed_policy_arns=tuple(read["aws_managed_policy_arns"]),
                customer_managed_policies=tuple(read["customer_managed_policies"]),
                permissions_boundary=read["permissions_boundary"],
                tags=read["tags"],
            )
        )
    return found


def _assignments(
    ctx: ExecutionContext, ours: Owned, records: ExportRecords
) -> list[AssignmentRecord]:
    """Every assignment the migration created or adopted that is there now."""
    arns = {ps.name: ps.arn for ps in records.permission_sets}
    keys = ours.assignments
    # One listing per (account, set), however many of its assignments are ours.
    live = assignments_of(ctx, ((key[0], arns[key[1]]) for key in keys if key[1] in arns))
    found = []
    for key in sorted(keys):
        account_id, set_name, principal_type, principal_id = key
        arn = arns.get(set_name)
        if arn is None or (principal_type, principal_id) not in live[(account_id, arn)]:
            records.notes.append(
                f"assignment {principal_type} {principal_id} -> {set_name} in {account_id}: "
                "in the journal, gone from AWS"
            )
            continue
        found.append(
            AssignmentRecord(
                account_id=account_id,
                permission_set_name=set_name,
                permission_set_arn=arn,
                principal_type=principal_type,
                principal_id=principal_id,
                principal_name=str(keys[key].get("principal_name") or principal_id),
            )
        )
    return found


def _workloads(
    ctx: ExecutionContext, uses: list[JournalUse], records: ExportRecords
) -> list[WorkloadRecord]:
    """The replace stage's roles, their policies and profiles, and the OIDC providers it
    created, each in its member account."""
    found: list[WorkloadRecord] = []
    seen: set[tuple[str, str, str]] = set()
    for use in sorted(uses, key=lambda u: (u.account_id or "", u.kind, u.target, str(u.params))):
        account_id = use.account_id or ""
        key = (account_id, use.kind, str(sorted(use.params.items())))
        if key in seen:  # the same thing done by two plans (waves)
            continue
        seen.add(key)
        record = _workload_record(ctx.iam(account_id), account_id, use, records)
        if record is not None:
            found.append(record)
    return found


def _workload_record(
    iam: Any, account_id: str, use: JournalUse, records: ExportRecords
) -> WorkloadRecord | None:
    p = use.params
    gone = f"{use.kind} {use.target} in {account_id}: in the journal, gone from AWS"
    if use.kind == "ensure-oidc-provider":
        return _oidc_record(iam, account_id, use, records, gone)
    role_name = p["role_name"]
    if use.kind == CREATE_WORKLOAD_ROLE:
        role = iam_roles.read_role(iam, role_name)
        if role is None:
            records.notes.append(gone)
            return None
        return RoleRecord(
            account_id=account_id,
            name=role["name"],
            path=role["path"],
            arn=role["arn"],
            assume_role_policy=role["assume_role_policy"],
            description=role["description"],
            max_session_duration=role["max_session_duration"],
            permissions_boundary=role["permissions_boundary"],
            tags=role["tags"],
        )
    if use.kind == "put-role-policy":
        document = iam_roles.read_role_policy(iam, role_name, p["policy_name"])
        if document is None:
            records.notes.append(gone)
            return None
        return RolePolicyRecord(account_id, role_name, p["policy_name"], document)
    if use.kind == "attach-role-policy":
        if p["policy_arn"] not in iam_roles.attached_policy_arns(iam, role_name):
            records.notes.append(gone)
            return None
        return RoleAttachmentRecord(account_id, role_name, p["policy_arn"])
    if use.kind == CREATE_INSTANCE_PROFILE:
        profile = iam_roles.read_instance_profile(iam, p["instance_profile_name"])
        if profile is None:
            records.notes.append(gone)
            return None
        return InstanceProfileRecord(
            account_id=account_id,
            name=profile["name"],
            path=profile["path"],
            roles=tuple(profile["roles"]),
            tags=profile["tags"],
        )
    return None


def _oidc_record(
    iam: Any, account_id: str, use: JournalUse, records: ExportRecords, gone: str
) -> OidcProviderRecord | None:
    """The OIDC provider the migration created; one it adopted is someone else's: a note."""
    provider = iam_roles.read_oidc_provider(iam, use.params["url"])
    if provider is None:
        records.notes.append(gone)
        return None
    if use.status == "adopted":  # someone else's: Terraform or a stack of theirs may own it
        records.workload_notes.append(
            (
                account_id,
                f"OIDC provider {provider['arn']} was there before the migration (adopted): "
                "not exported",
            )
        )
        return None
    return OidcProviderRecord(
        account_id=account_id,
        arn=provider["arn"],
        url=provider["url"],
        client_id_list=tuple(provider["client_id_list"]),
        thumbprint_list=tuple(provider["thumbprint_list"]),
        tags=provider["tags"],
    )
