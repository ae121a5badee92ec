"""Permission sets in IAM Identity Center: read, compare, create, provision and delete them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from domain.access import PermissionSetDefinition, boundary_as_api
from domain.errors import ActionError
from domain.plan import PlanAction
from domain.policy_documents import canonical_json, policy_fingerprint
from state.journal import JournalEntry
from tasks.aws import error_code
from tasks.aws import pages as _pages
from tasks.handler import Done, ExecutionContext, Live
from tasks.sso_requests import PROVISION_PERMISSION_SET, action_errors, request_and_wait

log = logging.getLogger(__name__)

# sso-admin's IAM action prefix is "sso" (Service Authorization Reference, IAM Identity Center).
READ_PERMISSIONS = (
    "sso:ListPermissionSets",
    "sso:DescribePermissionSet",
    "sso:GetInlinePolicyForPermissionSet",
    "sso:ListManagedPoliciesInPermissionSet",
    "sso:ListCustomerManagedPolicyReferencesInPermissionSet",
    "sso:GetPermissionsBoundaryForPermissionSet",
    "sso:ListPermissionSetsProvisionedToAccount",
    "sso:DescribePermissionSetProvisioningStatus",
    "sso:ListTagsForResource",  # iamc export: a set's tags, so the export keeps them
    "iam:GetPolicy",  # in member accounts: customer-managed policies must exist there first
    "iam:GetPolicyVersion",  # ... with the document the plan referenced them with
)
CREATE_PERMISSIONS = (
    "sso:CreatePermissionSet",
    "sso:UpdatePermissionSet",
    "sso:PutInlinePolicyToPermissionSet",
    "sso:AttachManagedPolicyToPermissionSet",
    "sso:AttachCustomerManagedPolicyReferenceToPermissionSet",
    "sso:PutPermissionsBoundaryToPermissionSet",
    "sso:DeletePermissionSet",
)
PROVISION_PERMISSIONS = ("sso:ProvisionPermissionSet",)
# An update (of a set an earlier wave created) may also remove what its definition no longer has.
UPDATE_PERMISSIONS = (
    "sso:UpdatePermissionSet",
    "sso:PutInlinePolicyToPermissionSet",
    "sso:DeleteInlinePolicyFromPermissionSet",
    "sso:AttachManagedPolicyToPermissionSet",
    "sso:DetachManagedPolicyFromPermissionSet",
    "sso:AttachCustomerManagedPolicyReferenceToPermissionSet",
    "sso:DetachCustomerManagedPolicyReferenceFromPermissionSet",
    "sso:PutPermissionsBoundaryToPermissionSet",
    "sso:DeletePermissionsBoundaryFromPermissionSet",
)
PERMISSIONS = CREATE_PERMISSIONS + UPDATE_PERMISSIONS + PROVISION_PERMISSIONS


def permission_set_names(client: Any, instance_arn: str) -> dict[str, str]:
    """name -> ARN of every permission set of the instance (one Describe per set)."""
    found: dict[str, str] = {}
    for arn in _pages(client, "list_permission_sets", "PermissionSets", InstanceArn=instance_arn):
        described = client.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
        found[described["PermissionSet"]["Name"]] = arn
    return found


def read_permission_set(client: Any, instance_arn: str, arn: str) -> dict[str, Any]:
    """A permission set as it is now, in the shape of a ``PermissionSetDefinition``."""
    ids = {"InstanceArn": instance_arn, "PermissionSetArn": arn}
    described = client.describe_permission_set(**ids)["PermissionSet"]
    inline = client.get_inline_policy_for_permission_set(**ids).get("InlinePolicy") or None
    managed = [
        p["Arn"]
        for p in _pages(
            client, "list_managed_policies_in_permission_set", "AttachedManagedPolicies", **ids
        )
    ]
    customer = [
        {"name": p["Name"], "path": p.get("Path") or "/"}
        for p in _pages(
            client,
            "list_customer_managed_policy_references_in_permission_set",
            "CustomerManagedPolicyReferences",
            **ids,
        )
    ]
    try:
        boundary_raw = client.get_permissions_boundary_for_permission_set(**ids).get(
            "PermissionsBoundary"
        )
    except ClientError as err:
        # No boundary is ResourceNotFoundException; moto lacks the call (NotImplemented).
        if error_code(err) not in ("ResourceNotFoundException", "NotImplemented"):
            raise
        boundary_raw = None
    return {
        "arn": arn,
        "name": described["Name"],
        "description": described.get("Description") or "",
        "session_duration": described.get("SessionDuration"),
        "inline_policy": json.loads(inline) if inline else None,
        "aws_managed_policy_arns": sorted(managed),
        "customer_managed_policies": sorted(customer, key=lambda r: (r["path"], r["name"])),
        "permissions_boundary": _boundary_from_api(boundary_raw),
    }


def _boundary_from_api(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    if raw.get("ManagedPolicyArn"):
        return {"managed_policy_arn": raw["ManagedPolicyArn"]}
    ref = raw.get("CustomerManagedPolicyReference") or {}
    return {
        "customer_managed_policy_reference": {"name": ref["Name"], "path": ref.get("Path", "/")}
    }


def differences(definition: PermissionSetDefinition, live: dict[str, Any]) -> list[str]:
    """What differs between the planned definition and the live permission set, in words."""
    found = []
    if (definition.description or "") != live["description"]:
        found.append(f"description {live['description']!r} (plan: {definition.description!r})")
    if definition.session_duration != live["session_duration"]:
        found.append(
            f"session duration {live['session_duration']} (plan: {definition.session_duration})"
        )
    planned_inline = definition.inline_policy_json
    live_inline = None if live["inline_policy"] is None else canonical_json(live["inline_policy"])
    if planned_inline != live_inline:
        found.append("inline policy differs")
    if sorted(definition.aws_managed_policy_arns) != live["aws_managed_policy_arns"]:
        found.append(
            f"managed policies {live['aws_managed_policy_arns']} "
            f"(plan: {sorted(definition.aws_managed_policy_arns)})"
        )
    planned_customer = sorted(
        (
            {"name": r["name"], "path": r.get("path") or "/"}
            for r in definition.customer_managed_policies
        ),
        key=lambda r: (r["path"], r["name"]),
    )
    if planned_customer != live["customer_managed_policies"]:
        found.append("customer-managed policy references differ")
    if (definition.permissions_boundary or None) != live["permissions_boundary"]:
        found.append("permissions boundary differs")
    return found


def definition_of(action: PlanAction) -> PermissionSetDefinition:
    return PermissionSetDefinition(**action.params["definition"])


def _names_loader(ctx: ExecutionContext) -> Callable[[], dict[str, str]]:
    return lambda: permission_set_names(ctx.sso(), ctx.instance.instance_arn)


def permission_set_arn(ctx: ExecutionContext, name: str) -> str | None:
    """The ARN of a permission set by name (the instance's listing is read once per run)."""
    return ctx.permission_set_arn(name, _names_loader(ctx))


def missing_customer_policies(
    session: boto3.Session, account_id: str, policies: list[dict[str, str]]
) -> list[str]:
    """Why the account can't take the customer-managed policy references of a permission set.

    Identity Center requires them to exist, same name and path, in every account the
    permission set is provisioned to (userguide, customer managed policies); and the role it
    provisions gets that account's document, so a reference planned with a document
    (``document_hash``) must still have it there (GetPolicy, then GetPolicyVersion of the
    default version), or the set would grant something else than the plan showed.

    Args:
        session: The member account's session.
        account_id: The account.
        policies: ``{"name", "path"}`` of each reference, and the planned ``document_hash``.

    Returns:
        One problem per reference: ``"ARN does not exist"`` or ``"ARN has another document
        than planned (default version v3)"``.
    """
    iam = session.client("iam")
    problems = []
    for policy in policies:
        arn = f"arn:aws:iam::{account_id}:policy{policy.get('path') or '/'}{policy['name']}"
        try:
            found = iam.get_policy(PolicyArn=arn)["Policy"]
            planned = policy.get("document_hash")
            if not planned:
                continue
            version = found["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            problems.append(f"{arn} does not exist")
            continue
        if policy_fingerprint(document["Document"]) != planned:
            problems.append(f"{arn} has another document than planned (default version {version})")
    return problems


class CreatePermissionSet:
    """``create-permission-set``: one permission set, converged to its planned definition."""

    PERMISSIONS = CREATE_PERMISSIONS

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        definition = definition_of(action)
        arn = permission_set_arn(ctx, definition.name)
        if arn is None:
            return Live(exists=False)
        live = read_permission_set(ctx.sso(), ctx.instance.instance_arn, arn)
        differ = differences(definition, live)
        return Live(exists=True, difference="; ".join(differ) or None, detail={"arn": arn})

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        definition = definition_of(action)
        sso, instance = ctx.sso(), ctx.instance.instance_arn
        arn = live.detail.get("arn")
        with action_errors(action.id):
            if arn is None:
                extra = {"Description": definition.description} if definition.description else {}
                created = sso.create_permission_set(
                    InstanceArn=instance,
                    Name=definition.name,
                    SessionDuration=definition.session_duration,
                    **extra,
                )["PermissionSet"]
                arn = created["PermissionSetArn"]
                ctx.remember_permission_set(definition.name, arn)
                # Recorded at once: if we die before the attachments, rollback can delete it.
                progress({"arn": arn, "undo": {"permission_set_arn": arn, "name": definition.name}})
                current = None
            else:
                current = read_permission_set(sso, instance, arn)
            self._converge(sso, instance, arn, definition, current, action.id)
        undo = {"permission_set_arn": arn, "name": definition.name}
        return Done(outcome={"arn": arn}, undo=undo)

    @staticmethod
    def _converge(
        sso: Any,
        instance: str,
        arn: str,
        definition: PermissionSetDefinition,
        current: dict[str, Any] | None,
        action_id: str,
    ) -> None:
        """Bring a permission set we created (maybe half-way) to its definition."""
        ids = {"InstanceArn": instance, "PermissionSetArn": arn}
        if current is not None and (
            current["description"] != (definition.description or "")
            or current["session_duration"] != definition.session_duration
        ):
            extra = {"Description": definition.description} if definition.description else {}
            sso.update_permission_set(**ids, SessionDuration=definition.session_duration, **extra)
        have_inline = None if current is None else current["inline_policy"]
        if definition.inline_policy is not None and (
            have_inline is None or canonical_json(have_inline) != definition.inline_policy_json
        ):
            sso.put_inline_policy_to_permission_set(
                **ids, InlinePolicy=definition.inline_policy_json
            )
        have_managed = set() if current is None else set(current["aws_managed_policy_arns"])
        for policy_arn in sorted(set(definition.aws_managed_policy_arns) - have_managed):
            sso.attach_managed_policy_to_permission_set(**ids, ManagedPolicyArn=policy_arn)
        have_customer = (
            set()
            if current is None
            else {(r["name"], r["path"]) for r in current["customer_managed_policies"]}
        )
        for ref in definition.customer_managed_policies:
            key = (ref["name"], ref.get("path") or "/")
            if key not in have_customer:
                sso.attach_customer_managed_policy_reference_to_permission_set(
                    **ids, CustomerManagedPolicyReference={"Name": key[0], "Path": key[1]}
                )
        if definition.permissions_boundary and (
            current is None or current["permissions_boundary"] != definition.permissions_boundary
        ):
            try:
                sso.put_permissions_boundary_to_permission_set(
                    **ids, PermissionsBoundary=boundary_as_api(definition.permissions_boundary)
                )
            except ClientError as err:
                if error_code(err) != "NotImplemented":
                    raise
                # Never silently skipped: without its boundary the set would grant more.
                raise ActionError(
                    action_id,
                    f"permission set {definition.name} needs a permissions boundary, but this "
                    "endpoint does not implement PutPermissionsBoundaryToPermissionSet "
                    "(NotImplemented); it was created without one and stays unassigned until "
                    "this action succeeds (rollback deletes it)",
                ) from err

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        name = recorded.get("name") or (entry.intent.get("action") or {}).get("target", "")
        arn = recorded.get("permission_set_arn") or permission_set_arn(ctx, name)
        if arn is None:
            return {"deleted": None, "note": "it does not exist"}
        try:
            ctx.sso().delete_permission_set(
                InstanceArn=ctx.instance.instance_arn, PermissionSetArn=arn
            )
        except ClientError as err:
            if error_code(err) == "ResourceNotFoundException":
                return {"deleted": None, "note": "already gone"}
            raise ActionError(
                entry.action_id,
                f"cannot delete permission set {name}: {error_code(err)}: "
                f"{err.response.get('Error', {}).get('Message', err)}",
            ) from err
        ctx.remember_permission_set(name, None)
        return {"deleted": arn}


def converge_definition(
    sso: Any, instance: str, arn: str, definition: PermissionSetDefinition, live: dict[str, Any]
) -> None:
    """Make a permission set equal to ``definition``: change, add and remove what differs.

    Used by an update and by its undo; the accounts see the change only once the set is
    provisioned to them again.
    """
    ids = {"InstanceArn": instance, "PermissionSetArn": arn}
    if (
        live["description"] != (definition.description or "")
        or live["session_duration"] != definition.session_duration
    ):
        extra = {"Description": definition.description} if definition.description else {}
        sso.update_permission_set(**ids, SessionDuration=definition.session_duration, **extra)
    have_inline = live["inline_policy"]
    if definition.inline_policy is None:
        if have_inline is not None:
            sso.delete_inline_policy_from_permission_set(**ids)
    elif have_inline is None or canonical_json(have_inline) != definition.inline_policy_json:
        sso.put_inline_policy_to_permission_set(**ids, InlinePolicy=definition.inline_policy_json)
    want_managed, have_managed = (
        set(definition.aws_managed_policy_arns),
        set(live["aws_managed_policy_arns"]),
    )
    for policy_arn in sorted(have_managed - want_managed):
        sso.detach_managed_policy_from_permission_set(**ids, ManagedPolicyArn=policy_arn)
    for policy_arn in sorted(want_managed - have_managed):
        sso.attach_managed_policy_to_permission_set(**ids, ManagedPolicyArn=policy_arn)
    want_customer = {
        (r["name"], r.get("path") or "/") for r in definition.customer_managed_policies
    }
    have_customer = {(r["name"], r["path"]) for r in live["customer_managed_policies"]}
    for name, path in sorted(have_customer - want_customer):
        sso.detach_customer_managed_policy_reference_from_permission_set(
            **ids, CustomerManagedPolicyReference={"Name": name, "Path": path}
        )
    for name, path in sorted(want_customer - have_customer):
        sso.attach_customer_managed_policy_reference_to_permission_set(
            **ids, CustomerManagedPolicyReference={"Name": name, "Path": path}
        )
    boundary = definition.permissions_boundary or None
    if boundary != live["permissions_boundary"]:
        if boundary is None:
            sso.delete_permissions_boundary_from_permission_set(**ids)
        else:
            sso.put_permissions_boundary_to_permission_set(
                **ids, PermissionsBoundary=boundary_as_api(boundary)
            )


class UpdatePermissionSet:
    """``update-permission-set``: change a set an earlier plan (wave) created, announced in
    the plan with its previous definition; undone by restoring that definition.

    Only a set that is exactly as the previous definition (or already as planned) is
    changed: one edited outside iamc since is a conflict, never overwritten.
    """

    PERMISSIONS = UPDATE_PERMISSIONS + PROVISION_PERMISSIONS

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        definition = definition_of(action)
        arn = permission_set_arn(ctx, definition.name)
        if arn is None:
            return Live(exists=False)
        live = read_permission_set(ctx.sso(), ctx.instance.instance_arn, arn)
        if not differences(definition, live):
            return Live(exists=True, detail={"arn": arn, "note": "already as planned"})
        previous = PermissionSetDefinition(**action.params["previous"])
        drift = differences(previous, live)
        if drift:
            return Live(
                exists=True,
                difference="it differs from the definition the plan updates from (changed "
                f"outside iamc?): {'; '.join(drift)}",
                detail={"arn": arn},
            )
        return Live(exists=False, detail={"arn": arn})

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        definition = definition_of(action)
        arn = live.detail.get("arn") or permission_set_arn(ctx, definition.name)
        if arn is None:
            raise ActionError(action.id, f"permission set {definition.name} does not exist")
        undo = {
            "permission_set_arn": arn,
            "name": definition.name,
            "previous": action.params["previous"],
        }
        # Recorded before the first call: a crash mid-update still knows what to restore.
        progress({"arn": arn, "undo": undo})
        sso, instance = ctx.sso(), ctx.instance.instance_arn
        with action_errors(action.id):
            current = read_permission_set(sso, instance, arn)
            converge_definition(sso, instance, arn, definition, current)
        return Done(outcome={"arn": arn, "changes": action.params.get("changes", [])}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        previous = recorded.get("previous") or (
            ((entry.intent.get("action") or {}).get("params") or {}).get("previous")
        )
        name = recorded.get("name") or (entry.intent.get("action") or {}).get("target", "")
        arn = recorded.get("permission_set_arn") or permission_set_arn(ctx, name)
        if arn is None or previous is None:
            return {"restored": None, "note": "it does not exist"}
        sso, instance = ctx.sso(), ctx.instance.instance_arn
        with action_errors(entry.action_id):
            current = read_permission_set(sso, instance, arn)
            converge_definition(sso, instance, arn, PermissionSetDefinition(**previous), current)
        # The accounts keep the updated roles until the set is provisioned again.
        request_id = request_and_wait(
            sso,
            instance,
            PROVISION_PERMISSION_SET,
            ctx.poll,
            entry.action_id,
            f"re-provisioning {name} with its previous definition",
            PermissionSetArn=arn,
            TargetType="ALL_PROVISIONED_ACCOUNTS",
        )
        return {"restored": arn, "reprovisioned": request_id}


class ProvisionPermissionSet:
    """``provision-permission-set``: deploy a permission set to one account and wait."""

    PERMISSIONS = (*PROVISION_PERMISSIONS, "sso:ListPermissionSetsProvisionedToAccount")

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        # Provisioning is idempotent and re-deploys the current definition: always do it.
        # Before the first provisioning in an account: what it had, so the probes of its
        # assignments list only the sets that were there already (ctx.assignments_of).
        if action.account_id:
            account_id = action.account_id
            ctx.note_provisioned_before(
                account_id, lambda: provisioned_permission_sets(ctx, account_id)
            )
        return Live(exists=False)

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        account_id = action.account_id or ""
        missing = missing_customer_policies(
            ctx.member(account_id), account_id, action.params.get("required_customer_policies", [])
        )
        if missing:
            raise ActionError(
                action.id,
                f"customer-managed policies in account {account_id} are not as planned: "
                f"{'; '.join(missing)}; create or restore them (same name, path and "
                "document) before provisioning, or re-run inventory and plan",
            )
        arn = permission_set_arn(ctx, action.target)
        if arn is None:
            raise ActionError(action.id, f"permission set {action.target} does not exist")
        request_id = request_and_wait(
            ctx.sso(),
            ctx.instance.instance_arn,
            PROVISION_PERMISSION_SET,
            ctx.poll,
            action.id,
            f"provisioning {action.target} to {account_id}",
            sent=lambda request_id: progress({"request_id": request_id}),
            PermissionSetArn=arn,
            TargetType="AWS_ACCOUNT",
            TargetId=account_id,
        )
        # Nothing to undo on its own: removing the last assignment of the set from the account
        # and deleting the set removes the role Identity Center provisioned there.
        return Done(outcome={"request_id": request_id, "arn": arn}, undo={"note": "none needed"})

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        return {"note": "deprovisioned when its assignments and permission set are deleted"}


def provisioned_permission_sets(ctx: ExecutionContext, account_id: str) -> list[str]:
    """ARNs of the permission sets provisioned to an account (for status and tests)."""
    return list(
        _pages(
            ctx.sso(),
            "list_permission_sets_provisioned_to_account",
            "PermissionSets",
            InstanceArn=ctx.instance.instance_arn,
            AccountId=account_id,
        )
    )


# Editing a set changes nothing in an account until it is provisioned there again; until then
# the account lists it under this status (API_ListPermissionSetsProvisionedToAccount).
NOT_PROVISIONED = "LATEST_PERMISSION_SET_NOT_PROVISIONED"


def provisioning_in_account(ctx: ExecutionContext, account_id: str) -> tuple[set[str], set[str]]:
    """The ARNs of the sets provisioned to an account, and of those whose latest definition
    is not provisioned there (edited since, ``LATEST_PERMISSION_SET_NOT_PROVISIONED``).

    Its calls are in ``READ_PERMISSIONS``.
    """
    sso, instance = ctx.sso(), ctx.instance.instance_arn
    ids = {"InstanceArn": instance, "AccountId": account_id}
    listing = "list_permission_sets_provisioned_to_account"
    provisioned = set(_pages(sso, listing, "PermissionSets", **ids))
    stale = set(_pages(sso, listing, "PermissionSets", **ids, ProvisioningStatus=NOT_PROVISIONED))
    return provisioned, stale


def read_for_export(client: Any, instance_arn: str, arn: str) -> dict[str, Any]:
    """:func:`read_permission_set`, the set's relay state (``None`` when it has none) and its
    tags (key -> value): iamc tags no set it creates, but a set it adopted, or one tagged
    since, keeps its tags only if the export writes them."""
    found = read_permission_set(client, instance_arn, arn)
    described = client.describe_permission_set(InstanceArn=instance_arn, PermissionSetArn=arn)
    found["relay_state"] = described["PermissionSet"].get("RelayState") or None
    tags = _pages(
        client, "list_tags_for_resource", "Tags", InstanceArn=instance_arn, ResourceArn=arn
    )
    found["tags"] = {t["Key"]: t["Value"] for t in sorted(tags, key=lambda t: t["Key"])}
    return found
