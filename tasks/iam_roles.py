"""IAM roles for workloads (the replace stage): the OIDC provider, the role, its policies and
instance profile, each created idempotently and undone in the order IAM requires.

What iamc creates carries its tags (``iamc:migration``, ``iamc:user``): a role or instance
profile of the planned name that has them and matches the plan is ours (a crash between the
create call and the journal's outcome, or an earlier plan's work) and is finished or adopted,
never created twice; one without them is someone else's, a conflict, never overwritten.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from domain.errors import ActionError, ConflictError
from domain.plan import PlanAction
from domain.policy_documents import canonical_json
from domain.workloads import ROLE_PATH
from state.journal import JournalEntry
from tasks.aws import error_code, error_message, pages
from tasks.handler import Done, ExecutionContext, Handler, Live

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetRole",
    "iam:ListRoles",
    "iam:GetRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:GetInstanceProfile",
    "iam:ListInstanceProfilesForRole",
    "iam:ListOpenIDConnectProviders",
    "iam:GetOpenIDConnectProvider",
)
PERMISSIONS = (
    "iam:CreateOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider",
    "iam:CreateRole",
    "iam:TagRole",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRole",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:CreateInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:AddRoleToInstanceProfile",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:DeleteInstanceProfile",
)

MIGRATION_TAG = "iamc:migration"
USER_TAG = "iamc:user"
# GitHub's OIDC certificate thumbprints; IAM no longer needs them for GitHub (it trusts the
# issuer's CA library) but CreateOpenIDConnectProvider still accepts them (IAM user guide,
# "Create an OpenID Connect (OIDC) identity provider in IAM").
GITHUB_THUMBPRINTS = (
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
)


def _iam(ctx: ExecutionContext, account_id: str | None) -> Any:
    return ctx.iam(account_id or "")


def _document(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _tags(action_or_undo: dict[str, Any]) -> list[dict[str, str]]:
    tags = [{"Key": MIGRATION_TAG, "Value": action_or_undo.get("migration") or "iamc"}]
    if action_or_undo.get("user"):
        tags.append({"Key": USER_TAG, "Value": action_or_undo["user"]})
    return tags


def _ours(tags: list[dict[str, str]], migration: str | None) -> bool:
    found = {t["Key"]: t["Value"] for t in tags}
    return MIGRATION_TAG in found and (not migration or found[MIGRATION_TAG] == migration)


def _failed(action_id: str, what: str, err: ClientError) -> ActionError:
    return ActionError(action_id, f"{what}: {error_message(err)}")


def _take_off(
    ctx: ExecutionContext,
    entry: JournalEntry,
    field: str,
    call_name: str,
    result: str,
    call: Callable[[Any, str, str], Any],
) -> dict[str, Any]:
    """Undo a policy put on or attached to a role, as the journal recorded it (gone already:
    done)."""
    recorded = entry.undo or {}
    role, item = recorded.get("role_name"), recorded.get(field)
    if not role or not item:
        return {"skipped": "nothing recorded to remove"}
    try:
        call(_iam(ctx, entry.account_id), role, item)
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise _failed(entry.action_id, f"{call_name} {item}", err) from err
    return {result: item}


# -- the OIDC provider ---------------------------------------------------------------------------


def _provider_arn(iam: Any, url: str) -> str | None:
    host = url.removeprefix("https://")
    # ListOpenIDConnectProviders is not paginated: it returns every provider of the account.
    for provider in iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", []):
        if provider["Arn"].endswith(f":oidc-provider/{host}"):
            return provider["Arn"]
    return None


class EnsureOidcProvider:
    """``ensure-oidc-provider``: the account's GitHub OIDC provider, adopted or created once.

    An adopted provider is never deleted by a rollback (the executor skips adopted rows); one
    this migration created is deleted only when no role under ``/iamc/`` trusts it any more.
    """

    PERMISSIONS: tuple[str, ...] = (
        "iam:CreateOpenIDConnectProvider",
        "iam:DeleteOpenIDConnectProvider",
    )

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        iam = _iam(ctx, action.account_id)
        arn = _provider_arn(iam, action.params["url"])
        if arn is None:
            return Live(exists=False)
        audiences = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn).get(
            "ClientIDList", []
        )
        missing = sorted(set(action.params["client_ids"]) - set(audiences))
        return Live(
            exists=True,
            difference=f"its audiences lack {', '.join(missing)}" if missing else None,
            detail={"arn": arn},
        )

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        if live.exists:  # our own earlier attempt created it, then the process died
            arn = live.detail["arn"]
            return Done(outcome={"arn": arn, "resumed": True}, undo={"arn": arn})
        try:
            arn = _iam(ctx, action.account_id).create_open_id_connect_provider(
                Url=action.params["url"],
                ClientIDList=list(action.params["client_ids"]),
                ThumbprintList=list(GITHUB_THUMBPRINTS),
                Tags=_tags(action.params),
            )["OpenIDConnectProviderArn"]
        except ClientError as err:
            raise _failed(action.id, "CreateOpenIDConnectProvider", err) from err
        log.info("OIDC provider %s created in %s", arn, action.account_id)
        return Done(outcome={"arn": arn, "created": True}, undo={"arn": arn})

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        arn = (entry.undo or {}).get("arn")
        if not arn:
            return {"skipped": "nothing recorded to remove"}
        iam = _iam(ctx, entry.account_id)
        users = sorted(
            role["RoleName"]
            for role in pages(iam, "list_roles", "Roles", PathPrefix=ROLE_PATH)
            if arn in json.dumps(_document(role.get("AssumeRolePolicyDocument") or {}))
        )
        if users:
            return {"kept": arn, "used_by": users}
        try:
            iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise _failed(entry.action_id, "DeleteOpenIDConnectProvider", err) from err
        return {"removed": arn}


# -- the role ------------------------------------------------------------------------------------


def _read_role(iam: Any, name: str) -> dict[str, Any] | None:
    try:
        return iam.get_role(RoleName=name)["Role"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise


def _strip_role(iam: Any, name: str) -> list[str]:
    """Take off everything that keeps IAM from deleting a role; what was removed."""
    removed = []
    for profile in pages(iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name):
        iam.remove_role_from_instance_profile(
            InstanceProfileName=profile["InstanceProfileName"], RoleName=name
        )
        removed.append(f"instance profile {profile['InstanceProfileName']}")
    for policy in pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name):
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        removed.append(f"attached {policy['PolicyArn']}")
    for policy_name in pages(iam, "list_role_policies", "PolicyNames", RoleName=name):
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
        removed.append(f"inline {policy_name}")
    return removed


class CreateWorkloadRole:
    """``create-workload-role``: the role under ``/iamc/`` with the runtime's trust policy."""

    PERMISSIONS: tuple[str, ...] = (
        "iam:CreateRole",
        "iam:TagRole",
        "iam:PutRolePermissionsBoundary",
        "iam:DeleteRole",
    )

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        iam = _iam(ctx, action.account_id)
        name = action.params["role_name"]
        role = _read_role(iam, name)
        if role is None:
            return Live(exists=False)
        detail = {"role_name": name, "arn": role["Arn"]}
        # GetRole returns the role's tags (IAM API reference, Role): no ListRoleTags needed.
        if not _ours(role.get("Tags", []), action.params.get("migration")):
            return Live(
                exists=True,
                difference=f"role {name} exists and was not created by this migration "
                f"(no {MIGRATION_TAG} tag)",
                detail=detail,
            )
        trust = _document(role.get("AssumeRolePolicyDocument") or {})
        if canonical_json(trust) != canonical_json(action.params["trust_policy"]):
            return Live(exists=True, difference=f"role {name} trusts others", detail=detail)
        # GetRole returns the boundary; one changed or removed since would let the role do
        # more (or other) than the plan showed.
        found = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        wanted = action.params.get("permissions_boundary_arn")
        if found != wanted:
            return Live(
                exists=True,
                difference=f"role {name} has permissions boundary {found or 'none'} "
                f"(plan: {wanted or 'none'})",
                detail=detail,
            )
        return Live(exists=True, detail=detail)

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        params = action.params
        name = params["role_name"]
        undo = {"role_name": name, "migration": params.get("migration")}
        if live.exists:
            if live.difference:  # a namesake appeared while the process was gone
                raise ConflictError(action.id, live.difference)
            return Done(outcome={**live.detail, "resumed": True}, undo=undo)
        progress({"undo": undo})
        extra = {}
        if params.get("permissions_boundary_arn"):
            extra["PermissionsBoundary"] = params["permissions_boundary_arn"]
        try:
            role = _iam(ctx, action.account_id).create_role(
                RoleName=name,
                Path=params["role_path"],
                AssumeRolePolicyDocument=json.dumps(params["trust_policy"]),
                Description=params["description"],
                Tags=_tags(params),
                **extra,
            )["Role"]
        except ClientError as err:
            raise _failed(action.id, f"CreateRole {name}", err) from err
        log.info("role %s created for %s (%s)", name, params["user"], params["runtime"])
        return Done(outcome={"role_name": name, "arn": role["Arn"]}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        name = recorded.get("role_name")
        if not name:
            return {"skipped": "nothing recorded to remove"}
        iam = _iam(ctx, entry.account_id)
        try:
            role = _read_role(iam, name)
            if role is None:
                return {"skipped": f"role {name} is gone"}
            if not _ours(role.get("Tags", []), recorded.get("migration")):
                return {"skipped": f"role {name} is no longer ours ({MIGRATION_TAG} tag gone)"}
            removed = _strip_role(iam, name)
            iam.delete_role(RoleName=name)
        except ClientError as err:
            raise _failed(entry.action_id, f"DeleteRole {name}", err) from err
        return {"removed": name, "with": removed}


class PutRolePolicy:
    """``put-role-policy``: one inline policy copied from the user (or its group)."""

    PERMISSIONS: tuple[str, ...] = ("iam:PutRolePolicy", "iam:DeleteRolePolicy")

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        role, name = action.params["role_name"], action.params["policy_name"]
        try:
            found = _iam(ctx, action.account_id).get_role_policy(RoleName=role, PolicyName=name)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            return Live(exists=False)
        same = canonical_json(_document(found["PolicyDocument"])) == canonical_json(
            action.params["policy"]
        )
        return Live(
            exists=True,
            difference=None if same else f"inline policy {name} of {role} has another document",
            detail={"role_name": role, "policy_name": name},
        )

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        role, name = action.params["role_name"], action.params["policy_name"]
        undo = {"role_name": role, "policy_name": name}
        if not live.exists or live.difference:
            progress({"undo": undo})
            try:
                _iam(ctx, action.account_id).put_role_policy(
                    RoleName=role,
                    PolicyName=name,
                    PolicyDocument=json.dumps(action.params["policy"]),
                )
            except ClientError as err:
                raise _failed(action.id, f"PutRolePolicy {name} on {role}", err) from err
        return Done(outcome={"put": name}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        return _take_off(
            ctx,
            entry,
            "policy_name",
            "DeleteRolePolicy",
            "removed",
            lambda iam, role, name: iam.delete_role_policy(RoleName=role, PolicyName=name),
        )


class AttachRolePolicy:
    """``attach-role-policy``: one managed policy the user (or its group) had attached."""

    PERMISSIONS: tuple[str, ...] = ("iam:AttachRolePolicy", "iam:DetachRolePolicy")

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        role, arn = action.params["role_name"], action.params["policy_arn"]
        try:
            attached = {
                p["PolicyArn"]
                for p in pages(
                    _iam(ctx, action.account_id),
                    "list_attached_role_policies",
                    "AttachedPolicies",
                    RoleName=role,
                )
            }
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            return Live(exists=False)
        return Live(exists=arn in attached, detail={"role_name": role, "policy_arn": arn})

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        role, arn = action.params["role_name"], action.params["policy_arn"]
        undo = {"role_name": role, "policy_arn": arn}
        if not live.exists:
            progress({"undo": undo})
            try:
                _iam(ctx, action.account_id).attach_role_policy(RoleName=role, PolicyArn=arn)
            except ClientError as err:
                raise _failed(action.id, f"AttachRolePolicy {arn} to {role}", err) from err
        return Done(outcome={"attached": arn}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        return _take_off(
            ctx,
            entry,
            "policy_arn",
            "DetachRolePolicy",
            "detached",
            lambda iam, role, arn: iam.detach_role_policy(RoleName=role, PolicyArn=arn),
        )


class CreateInstanceProfile:
    """``create-instance-profile``: an instance profile of the role's name, holding the role.

    A profile of ours left empty (the process died between CreateInstanceProfile and
    AddRoleToInstanceProfile) is finished, not created again.
    """

    PERMISSIONS: tuple[str, ...] = (
        "iam:CreateInstanceProfile",
        "iam:TagInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteInstanceProfile",
    )

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        name, role = action.params["instance_profile_name"], action.params["role_name"]
        try:
            profile = _iam(ctx, action.account_id).get_instance_profile(InstanceProfileName=name)[
                "InstanceProfile"
            ]
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            return Live(exists=False)
        roles = [r["RoleName"] for r in profile.get("Roles", [])]
        detail = {"instance_profile_name": name, "roles": roles}
        if roles == [role]:
            return Live(exists=True, detail=detail)
        if not roles and _ours(profile.get("Tags", []), action.params.get("migration")):
            return Live(exists=False, detail={**detail, "profile_exists": True})
        return Live(
            exists=True,
            difference=f"instance profile {name} exists holding {roles or 'no role'}",
            detail=detail,
        )

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        name, role = action.params["instance_profile_name"], action.params["role_name"]
        undo = {"instance_profile_name": name, "role_name": role}
        if live.exists:
            return Done(outcome={"instance_profile": name, "resumed": True}, undo=undo)
        iam = _iam(ctx, action.account_id)
        progress({"undo": undo})
        try:
            if not live.detail.get("profile_exists"):
                iam.create_instance_profile(
                    InstanceProfileName=name,
                    Path=action.params["role_path"],
                    Tags=_tags(action.params),
                )
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
        except ClientError as err:
            raise _failed(action.id, f"instance profile {name}", err) from err
        return Done(outcome={"instance_profile": name}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        name, role = recorded.get("instance_profile_name"), recorded.get("role_name")
        if not name:
            return {"skipped": "nothing recorded to remove"}
        iam = _iam(ctx, entry.account_id)
        for call, kwargs in (
            (iam.remove_role_from_instance_profile, {"RoleName": role}),
            (iam.delete_instance_profile, {}),
        ):
            try:
                call(InstanceProfileName=name, **kwargs)
            except ClientError as err:
                if error_code(err) != "NoSuchEntity":
                    raise _failed(entry.action_id, f"instance profile {name}", err) from err
        return {"removed": name}


HANDLERS: dict[str, Handler] = {
    "ensure-oidc-provider": EnsureOidcProvider(),
    "create-workload-role": CreateWorkloadRole(),
    "put-role-policy": PutRolePolicy(),
    "attach-role-policy": AttachRolePolicy(),
    "create-instance-profile": CreateInstanceProfile(),
}


# -- read back, as it is now (iamc export terraform) ---------------------------------------------


def read_role(iam: Any, name: str) -> dict[str, Any] | None:
    """A role as it is now: its attributes, trust policy and permissions boundary; None if gone."""
    role = _read_role(iam, name)
    if role is None:
        return None
    boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    return {
        "name": role["RoleName"],
        "path": role.get("Path") or "/",
        "arn": role["Arn"],
        "assume_role_policy": _document(role.get("AssumeRolePolicyDocument") or {}),
        "description": role.get("Description") or "",
        "max_session_duration": role.get("MaxSessionDuration") or 3600,
        "permissions_boundary": boundary,
        "tags": _tag_map(role.get("Tags", [])),  # GetRole returns the role's tags
    }


def _tag_map(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sorted(tags, key=lambda t: t["Key"])}


def read_role_policy(iam: Any, role: str, policy: str) -> dict[str, Any] | None:
    """An inline policy's document as it is now; None if it is gone."""
    try:
        found = iam.get_role_policy(RoleName=role, PolicyName=policy)
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    return _document(found["PolicyDocument"])


def attached_policy_arns(iam: Any, role: str) -> list[str]:
    """The managed policies attached to a role now."""
    found = pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=role)
    return sorted(p["PolicyArn"] for p in found)


def read_instance_profile(iam: Any, name: str) -> dict[str, Any] | None:
    """An instance profile's name, path and role names as they are now; None if gone."""
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    return {
        "name": profile["InstanceProfileName"],
        "path": profile.get("Path") or "/",
        "roles": [r["RoleName"] for r in profile.get("Roles", [])],
        # GetInstanceProfile returns the profile's tags (IAM API reference, InstanceProfile).
        "tags": _tag_map(profile.get("Tags", [])),
    }


def read_oidc_provider(iam: Any, url: str) -> dict[str, Any] | None:
    """The account's OIDC provider for ``url`` as it is now (ARN, URL, audiences,
    thumbprints); None if there is none."""
    arn = _provider_arn(iam, url)
    if arn is None:
        return None
    found = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    return {
        "arn": arn,
        "url": url,
        "client_id_list": list(found.get("ClientIDList", [])),
        "thumbprint_list": list(found.get("ThumbprintList", [])),
        "tags": _tag_map(found.get("Tags", [])),  # GetOpenIDConnectProvider returns them
    }
