"""The ``central-roles`` target's central side: per access a group (people as IAM users) or an
inline policy on each federated role, allowing ``sts:AssumeRole`` on exactly its member roles.

Everything here acts in the central (identity) account: ``action.account_id`` is that account,
reached like any member account (``ctx.iam``). A group or membership already there is adopted
(a rollback leaves it), unless the group already grants something else (attached or other
inline policies: someone else's group, whose members would gain its permissions). An assume
policy is read, then put with the role ARNs the live document (an earlier or concurrent wave's)
already allows kept beside the planned ones, so a put never takes a migrated person's central
half of the switch away; the document it replaced is recorded and a rollback puts it back. Also
the preflight's check that the planned central principals exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from domain.central_roles import (
    ADD_GROUP_MEMBER,
    ASSUME_STATEMENT_SID,
    CREATE_ACCESS_GROUP,
    PUT_ACCESS_POLICY,
    group_assume_policy_name,
)
from domain.errors import ActionError
from domain.plan import PlanAction
from domain.policy_documents import as_list, policy_fingerprint
from state.journal import JournalEntry
from tasks.aws import error_code, error_message, pages
from tasks.handler import Done, ExecutionContext, Handler, Live

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetGroup",
    "iam:GetGroupPolicy",
    "iam:ListGroupPolicies",
    "iam:ListAttachedGroupPolicies",
    "iam:GetRolePolicy",
    "iam:ListGroupsForUser",
    "iam:GetUser",
    "iam:GetRole",
)
# AddUserToGroup and RemoveUserFromGroup are routine writes here (the central account's access
# groups), not only restore's: the routine session policy can no longer deny them.
PERMISSIONS = (
    "iam:CreateGroup",
    "iam:DeleteGroup",
    "iam:PutGroupPolicy",
    "iam:DeleteGroupPolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:AddUserToGroup",
    "iam:RemoveUserFromGroup",
)


def _failed(action_id: str, what: str, err: ClientError) -> ActionError:
    return ActionError(action_id, f"{what}: {error_message(err)}")


def _document(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class CreateAccessGroup:
    """``create-access-group``: the access's group in the central account, under the path."""

    PERMISSIONS: tuple[str, ...] = ("iam:CreateGroup", "iam:DeleteGroup")

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        name, path = action.params["group_name"], action.params["path"]
        try:
            # GetGroup pages its members; only the group itself is read, from the first page.
            group = ctx.iam(action.account_id or "").get_group(GroupName=name, MaxItems=1)["Group"]
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            return Live(exists=False)
        detail = {"group_name": name, "arn": group["Arn"]}
        if (group.get("Path") or "/") != path:
            return Live(
                exists=True,
                difference=f"group {name} exists under path {group.get('Path')} (plan: {path})",
                detail=detail,
            )
        grants = _other_grants(ctx.iam(action.account_id or ""), name, action.params)
        if grants:
            # Someone else's group (iamc-Admin with AdministratorAccess): adopting it would put
            # the planned people into it with its permissions too.
            return Live(
                exists=True,
                difference=f"group {name} already grants {', '.join(grants)}: adding people "
                "to it would give them that too. Rename or empty that group (or change "
                "[central] role_prefix) and re-plan",
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
        name = action.params["group_name"]
        undo = {"group_name": name}
        if live.exists:  # our own earlier attempt created it, then the process died
            return Done(outcome={**live.detail, "resumed": True}, undo=undo)
        progress({"undo": undo})
        try:
            group = ctx.iam(action.account_id or "").create_group(
                GroupName=name, Path=action.params["path"]
            )["Group"]
        except ClientError as err:
            raise _failed(action.id, f"CreateGroup {name}", err) from err
        log.info("group %s created in %s", name, action.account_id)
        return Done(outcome={"group_name": name, "arn": group["Arn"]}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        name = (entry.undo or {}).get("group_name")
        if not name:
            return {"skipped": "nothing recorded to remove"}
        iam = ctx.iam(entry.account_id or "")
        try:
            # Members or policies this plan did not put there (its own are undone first):
            # another wave's, or added since. The group is left as it is, as a permission set
            # another wave uses is (IAM would refuse with DeleteConflict anyway).
            if _group_in_use(iam, name):
                return {"kept": name, "reason": "it still has members or policies"}
            iam.delete_group(GroupName=name)
        except ClientError as err:
            if error_code(err) == "NoSuchEntity":
                return {"skipped": f"group {name} is gone"}
            if error_code(err) == "DeleteConflict":
                return {"kept": name, "reason": "it still has members or policies"}
            raise _failed(entry.action_id, f"DeleteGroup {name}", err) from err
        return {"removed": name}


def _other_grants(iam: Any, name: str, params: dict[str, Any]) -> list[str]:
    """What an existing group grants besides the plan's assume policy: its attached managed
    policies and its other inline policies (the planned assume policy may be an earlier
    wave's, or this plan's own, and is what ``put-access-policy`` manages)."""
    planned = params.get("policy_name") or group_assume_policy_name(name, params["access"])
    attached = [
        f"managed policy {p['PolicyArn']}"
        for p in pages(iam, "list_attached_group_policies", "AttachedPolicies", GroupName=name)
    ]
    inline = [
        f"inline policy {policy}"
        for policy in pages(iam, "list_group_policies", "PolicyNames", GroupName=name)
        if policy != planned
    ]
    return sorted(attached) + sorted(inline)


def _group_in_use(iam: Any, name: str) -> bool:
    return any(
        next(iter(pages(iam, operation, key, GroupName=name)), None) is not None
        for operation, key in (
            ("get_group", "Users"),
            ("list_group_policies", "PolicyNames"),
            ("list_attached_group_policies", "AttachedPolicies"),
        )
    )


def _get_policy(iam: Any, principal_type: str, principal: str, policy: str) -> Any | None:
    """The principal's inline policy document, None if there is none (or no principal)."""
    try:
        if principal_type == "group":
            found = iam.get_group_policy(GroupName=principal, PolicyName=policy)
        else:
            found = iam.get_role_policy(RoleName=principal, PolicyName=policy)
    except ClientError as err:
        if error_code(err) != "NoSuchEntity":
            raise
        return None
    return _document(found["PolicyDocument"])


def _put_policy(iam: Any, principal_type: str, principal: str, policy: str, document: Any) -> None:
    text = json.dumps(document)
    if principal_type == "group":
        iam.put_group_policy(GroupName=principal, PolicyName=policy, PolicyDocument=text)
    else:
        iam.put_role_policy(RoleName=principal, PolicyName=policy, PolicyDocument=text)


def _delete_policy(iam: Any, principal_type: str, principal: str, policy: str) -> None:
    if principal_type == "group":
        iam.delete_group_policy(GroupName=principal, PolicyName=policy)
    else:
        iam.delete_role_policy(RoleName=principal, PolicyName=policy)


def _allowed_roles(document: Any) -> set[str]:
    """The role ARNs a document this target wrote allows ``sts:AssumeRole`` on.

    Only its own statement counts (Sid ``SwitchIntoTheAccess``, Allow, ``sts:AssumeRole``), and
    of it only IAM role ARNs without wildcards: a statement edited by hand to ``*`` or to
    something else is not carried into the next put.
    """
    found: set[str] = set()
    for statement in as_list((document or {}).get("Statement")):
        if not isinstance(statement, dict) or statement.get("Sid") != ASSUME_STATEMENT_SID:
            continue
        if statement.get("Effect") != "Allow" or as_list(statement.get("Action")) != [
            "sts:AssumeRole"
        ]:
            continue
        found.update(
            resource
            for resource in as_list(statement.get("Resource"))
            if isinstance(resource, str) and _is_role_arn(resource)
        )
    return found


def _is_role_arn(value: str) -> bool:
    parts = value.split(":", 5)
    return (
        len(parts) == 6
        and parts[0] == "arn"
        and parts[2] == "iam"
        and parts[4].isdigit()
        and parts[5].startswith("role/")
        and not any(c in value for c in "*?")
    )


def _merged(planned: dict[str, Any], live: Any) -> tuple[dict[str, Any], list[str]]:
    """The planned document with the role ARNs the live one already allows kept beside the
    planned ones, and the ARNs of it the live document does not allow yet.

    The planned statement's condition (MFA) stays as planned, for every ARN.
    """
    earlier = _allowed_roles(live)
    document = json.loads(json.dumps(planned))
    planned_arns: set[str] = set()
    for statement in as_list(document.get("Statement")):
        if isinstance(statement, dict) and statement.get("Sid") == ASSUME_STATEMENT_SID:
            planned_arns.update(str(r) for r in as_list(statement.get("Resource")))
            statement["Resource"] = sorted(planned_arns | earlier)
    return document, sorted(planned_arns - earlier)


class PutAccessPolicy:
    """``put-access-policy``: the inline policy allowing ``sts:AssumeRole`` on the access's
    member roles, on its group or on a federated role.

    Read, then put: the put keeps every role ARN the live document (an earlier or concurrent
    wave's, or a wave applied after this plan was made) already allows, so it never takes
    away an already migrated person's central half of the switch.
    """

    PERMISSIONS: tuple[str, ...] = (
        "iam:PutGroupPolicy",
        "iam:DeleteGroupPolicy",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
    )

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        params = action.params
        kind, principal, policy = (
            params["principal_type"],
            params["principal_name"],
            params["policy_name"],
        )
        found = _get_policy(ctx.iam(action.account_id or ""), kind, principal, policy)
        detail = {"principal_type": kind, "principal_name": principal, "policy_name": policy}
        if found is None:
            return Live(exists=False, detail=detail)
        wanted, _ = _merged(params["document"], found)
        if policy_fingerprint(found) == policy_fingerprint(wanted):
            # Already allows the planned roles (this plan's document, or a later wave's that
            # covers them too): nothing to put.
            return Live(exists=True, detail=detail)
        # Another document under the name (an earlier wave's, covering its own roles): put
        # the union over it, and a rollback puts it back.
        return Live(exists=False, detail=detail)

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        params = action.params
        kind, principal, policy = (
            params["principal_type"],
            params["principal_name"],
            params["policy_name"],
        )
        if live.exists:  # our own earlier attempt put it, then the process died
            undo = (prior.undo if prior is not None else None) or {}
            return Done(outcome={"put": policy, "resumed": True}, undo=undo or None)
        iam = ctx.iam(action.account_id or "")
        # Read again now, not at the probe: another wave may have put its document since.
        try:
            found = _get_policy(iam, kind, principal, policy)
        except ClientError as err:
            raise _failed(action.id, f"read {policy} on {kind} {principal}", err) from err
        document, added = _merged(params["document"], found)
        # What was there before the first attempt stands: a resumed attempt may find a
        # document it put itself, which is not what a rollback should put back.
        before = (prior.undo or {}) if prior is not None else {}
        undo = {
            "principal_type": kind,
            "principal_name": principal,
            "policy_name": policy,
            "previous": before.get("previous", found),
            "put": policy_fingerprint(document),
        }
        progress({"undo": undo})
        try:
            _put_policy(iam, kind, principal, policy, document)
        except ClientError as err:
            raise _failed(action.id, f"put {policy} on {kind} {principal}", err) from err
        kept = sorted(_allowed_roles(found) - set(params.get("role_arns") or []))
        log.info(
            "%s on %s %s in %s: %d role(s) added, %d earlier kept",
            policy,
            kind,
            principal,
            action.account_id,
            len(added),
            len(kept),
        )
        return Done(
            outcome={"put": policy, "on": f"{kind} {principal}", "added": added, "kept": kept},
            undo=undo,
        )

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        kind, principal, policy = (
            recorded.get("principal_type"),
            recorded.get("principal_name"),
            recorded.get("policy_name"),
        )
        if not kind or not principal or not policy:
            return {"skipped": "nothing recorded to remove"}
        iam = ctx.iam(entry.account_id or "")
        try:
            found = _get_policy(iam, kind, principal, policy)
            if found is None:
                return {"skipped": f"{policy} on {kind} {principal} is gone"}
            if recorded.get("put") and policy_fingerprint(found) != recorded["put"]:
                # Put again since (a later wave's document, covering its roles too): not ours.
                return {"kept": policy, "reason": "its document changed since this plan put it"}
            previous = recorded.get("previous")
            if previous:
                _put_policy(iam, kind, principal, policy, previous)
                return {"restored": policy, "on": f"{kind} {principal}"}
            _delete_policy(iam, kind, principal, policy)
        except ClientError as err:
            if error_code(err) == "NoSuchEntity":
                return {"skipped": f"{policy} on {kind} {principal} is gone"}
            raise _failed(entry.action_id, f"undo {policy} on {kind} {principal}", err) from err
        return {"removed": policy, "on": f"{kind} {principal}"}


class AddGroupMember:
    """``add-group-member``: a person (a central IAM user) in the access's group."""

    PERMISSIONS: tuple[str, ...] = ("iam:AddUserToGroup", "iam:RemoveUserFromGroup")

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        group, user = action.params["group_name"], action.params["user_name"]
        detail = {"group_name": group, "user_name": user}
        try:
            groups = {
                g["GroupName"]
                for g in pages(
                    ctx.iam(action.account_id or ""),
                    "list_groups_for_user",
                    "Groups",
                    UserName=user,
                )
            }
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            return Live(exists=False, detail=detail)  # apply names the missing user
        return Live(exists=group in groups, detail=detail)

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        group, user = action.params["group_name"], action.params["user_name"]
        undo = {"group_name": group, "user_name": user}
        if not live.exists:
            progress({"undo": undo})
            try:
                ctx.iam(action.account_id or "").add_user_to_group(GroupName=group, UserName=user)
            except ClientError as err:
                raise _failed(action.id, f"AddUserToGroup {user} to {group}", err) from err
        return Done(outcome={"member": user, "of": group}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        group, user = recorded.get("group_name"), recorded.get("user_name")
        if not group or not user:
            return {"skipped": "nothing recorded to remove"}
        try:
            ctx.iam(entry.account_id or "").remove_user_from_group(GroupName=group, UserName=user)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise _failed(entry.action_id, f"RemoveUserFromGroup {user} {group}", err) from err
        return {"removed": user, "from": group}


HANDLERS: dict[str, Handler] = {
    CREATE_ACCESS_GROUP: CreateAccessGroup(),
    PUT_ACCESS_POLICY: PutAccessPolicy(),
    ADD_GROUP_MEMBER: AddGroupMember(),
}


# -- the planned central principals exist (preflight) --------------------------------------------


def _name_of(arn: str) -> tuple[str, str, str]:
    """``arn:aws:iam::C:user/path/name`` -> (account, "user", name)."""
    parts = arn.split(":", 5)
    resource = parts[5] if len(parts) == 6 else ""
    kind, _, rest = resource.partition("/")
    return parts[4] if len(parts) > 4 else "", kind, rest.rsplit("/", 1)[-1]


def central_principal_problems(
    session_of: Callable[[str], Any],
    principal_arns: list[str],
    user_names: list[tuple[str, str]],
) -> list[str]:
    """Which planned central principals no longer exist (or moved) in the central account.

    Args:
        session_of: account id -> a session there (the central account's is asked).
        principal_arns: The ARNs the member roles' trust policies name (users or roles).
        user_names: ``(central account, user name)`` of the planned group members.

    Returns:
        One message per principal that is gone, moved or renamed.
    """
    problems = []
    wanted = {_name_of(arn): arn for arn in principal_arns}
    for account, name in user_names:
        wanted.setdefault((account, "user", name), "")
    clients: dict[str, Any] = {}
    for (account, kind, name), arn in sorted(wanted.items()):
        iam = clients.get(account)
        if iam is None:
            iam = clients[account] = session_of(account).client("iam")
        try:
            if kind == "user":
                found = iam.get_user(UserName=name)["User"]["Arn"]
            elif kind == "role":
                found = iam.get_role(RoleName=name)["Role"]["Arn"]
            else:
                problems.append(f"central principal {arn} is neither a user nor a role")
                continue
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            problems.append(
                f"central {kind} {name} ({arn or account}) no longer exists in the central "
                f"account {account}"
            )
            continue
        if arn and found != arn:
            problems.append(f"central {kind} {name} is now {found} (planned {arn})")
    return problems


def central_access_problems(ctx: ExecutionContext, actions: list[PlanAction]) -> list[str]:
    """What of a person's planned central side is missing now: each ``put-access-policy``
    still allows ``sts:AssumeRole`` on the roles it was planned for (a later wave's document
    covers more, never fewer), and each ``add-group-member`` membership still stands.

    Read before the person's old IAM user is disabled: without them the member role's trust
    alone does not let anyone in (a cross-account switch needs both sides).
    """
    problems: list[str] = []
    for action in actions:
        params = action.params
        iam = ctx.iam(action.account_id or "")
        if action.kind == PUT_ACCESS_POLICY:
            document = _get_policy(
                iam, params["principal_type"], params["principal_name"], params["policy_name"]
            )
            allowed = {
                str(resource)
                for statement in as_list((document or {}).get("Statement"))
                if isinstance(statement, dict) and statement.get("Effect") == "Allow"
                for resource in as_list(statement.get("Resource"))
            }
            missing = sorted(set(params.get("role_arns") or []) - allowed)
            if document is None or missing:
                problems.append(
                    f"{params['principal_type']} {params['principal_name']}'s policy "
                    f"{params['policy_name']} in the central account "
                    + ("is gone" if document is None else f"no longer allows {missing[0]}")
                )
        elif action.kind == ADD_GROUP_MEMBER:
            groups = {
                g["GroupName"]
                for g in pages(iam, "list_groups_for_user", "Groups", UserName=params["user_name"])
            }
            if params["group_name"] not in groups:
                problems.append(
                    f"user {params['user_name']} is no longer in group {params['group_name']} "
                    "of the central account"
                )
    return problems
