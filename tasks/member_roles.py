"""The ``central-roles`` target's member roles: one role per access in each member account.

A role of the planned name is read whole (trust, managed and inline policies, boundary, tags)
and compared with the plan. Identical: adopted as it is (a rollback leaves it). Tagged
``iamc:migration`` with this migration but different (an earlier plan of it made it): brought
to the plan, its previous state recorded so a rollback puts it back. Neither: someone else's,
a conflict, never overwritten. Creating is several calls (CreateRole, AttachRolePolicy each,
PutRolePolicy); apply converges from whatever of them already happened, so a resume after a
crash between any two finishes the role and never makes a second one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from domain.errors import ActionError, ConflictError
from domain.plan import PlanAction
from domain.policy_documents import policy_fingerprint
from domain.trust_policy import allowed_principals, central_trust_problems
from state.journal import JournalEntry
from tasks.aws import error_code, error_message, pages
from tasks.handler import Done, ExecutionContext, Handler, Live

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetRole",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "iam:GetRolePolicy",
)
PERMISSIONS = (
    "iam:CreateRole",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:DeleteRole",
)

MIGRATION_TAG = "iamc:migration"
ACCESS_TAG = "iamc:access"
CENTRAL_ACCOUNT_TAG = "iamc:central-account"


def _document(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def same_policy(found: Any, planned: Any) -> bool:
    """Whether two policy documents grant the same (IAM may return a one-item list as the
    item, and the order of keys and values is its own)."""
    return policy_fingerprint(_document(found)) == policy_fingerprint(_document(planned))


def _failed(action_id: str, what: str, err: ClientError) -> ActionError:
    return ActionError(action_id, f"{what}: {error_message(err)}")


def _tag_map(tags: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def read_role_state(iam: Any, name: str) -> dict[str, Any] | None:
    """A role as it is now, in the form a plan's params and a rollback's record use.

    Returns:
        ``{"arn", "path", "description", "max_session_duration", "trust_policy",
        "permissions_boundary_arn", "tags", "managed_policy_arns", "inline_policies"}``
        (tags and inline policies as name -> value); None when there is no such role.
    """
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    inline = {
        policy: _document(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])
        for policy in pages(iam, "list_role_policies", "PolicyNames", RoleName=name)
    }
    managed = sorted(
        p["PolicyArn"]
        for p in pages(iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name)
    )
    return {
        "arn": role["Arn"],
        "path": role.get("Path") or "/",
        "description": role.get("Description") or "",
        "max_session_duration": role.get("MaxSessionDuration") or 3600,
        "trust_policy": _document(role.get("AssumeRolePolicyDocument") or {}),
        "permissions_boundary_arn": (role.get("PermissionsBoundary") or {}).get(
            "PermissionsBoundaryArn"
        ),
        # GetRole returns the role's tags (IAM API reference, Role): no ListRoleTags needed.
        "tags": _tag_map(role.get("Tags", [])),
        "managed_policy_arns": managed,
        "inline_policies": inline,
    }


def _planned_inline(params: dict[str, Any]) -> dict[str, Any]:
    document = params.get("inline_policy")
    return {params["inline_policy_name"]: document} if document else {}


def _planned_state(params: dict[str, Any]) -> dict[str, Any]:
    """The plan's role in :func:`read_role_state`'s form (the parts a rollback puts back)."""
    return {
        "path": params["path"],
        "description": params.get("description") or "",
        "max_session_duration": params["max_session_duration"],
        "trust_policy": params["trust_policy"],
        "permissions_boundary_arn": params.get("permissions_boundary_arn"),
        "tags": _tag_map(params["tags"]),
        "managed_policy_arns": sorted(set(params["managed_policy_arns"])),
        "inline_policies": _planned_inline(params),
    }


def differences(state: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """How a live role differs from the planned one in what decides who gets what.

    Trust, managed and inline policies, boundary, path (it is in the role's ARN, which the
    central side's policies name) and the ``iamc:access`` tag; a description or session
    length of its own does not stop an adoption.
    """
    found = []
    if not same_policy(state["trust_policy"], params["trust_policy"]):
        found.append("its trust policy differs")
    if state["path"] != params["path"]:
        found.append(f"its path is {state['path']} (plan: {params['path']})")
    wanted = set(params["managed_policy_arns"])
    has = set(state["managed_policy_arns"])
    if has != wanted:
        parts = [f"+{a}" for a in sorted(has - wanted)] + [f"-{a}" for a in sorted(wanted - has)]
        found.append("managed policies " + " ".join(parts))
    inline = {k: policy_fingerprint(v) for k, v in state["inline_policies"].items()}
    planned = {k: policy_fingerprint(v) for k, v in _planned_inline(params).items()}
    if inline != planned:
        found.append(f"inline policies {sorted(inline) or 'none'} differ from the plan's")
    boundary = params.get("permissions_boundary_arn")
    if state["permissions_boundary_arn"] != boundary:
        found.append(
            f"permissions boundary {state['permissions_boundary_arn'] or 'none'} "
            f"(plan: {boundary or 'none'})"
        )
    access = _tag_map(params["tags"]).get(ACCESS_TAG)
    if state["tags"].get(ACCESS_TAG) != access:
        found.append(f"tag {ACCESS_TAG}={state['tags'].get(ACCESS_TAG)} (plan: {access})")
    return found


def _migration(params: dict[str, Any]) -> str | None:
    return _tag_map(params.get("tags") or []).get(MIGRATION_TAG)


def _ours(state: dict[str, Any], migration: str | None) -> bool:
    return bool(migration) and state["tags"].get(MIGRATION_TAG) == migration


def _converge(iam: Any, name: str, state: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Bring an existing role to ``want`` (a :func:`read_role_state`-shaped dict); what changed.

    Each step is idempotent and compares first, so running it again after a crash part-way
    sends only what is still missing.
    """
    changed = []
    if not same_policy(state["trust_policy"], want["trust_policy"]):
        iam.update_assume_role_policy(
            RoleName=name, PolicyDocument=json.dumps(want["trust_policy"])
        )
        changed.append("trust policy")
    if (state["description"], state["max_session_duration"]) != (
        want["description"],
        want["max_session_duration"],
    ):
        iam.update_role(
            RoleName=name,
            Description=want["description"],
            MaxSessionDuration=want["max_session_duration"],
        )
        changed.append("description and session length")
    boundary = want["permissions_boundary_arn"]
    if state["permissions_boundary_arn"] != boundary:
        if boundary:
            iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
        else:
            iam.delete_role_permissions_boundary(RoleName=name)
        changed.append("permissions boundary")
    stale_tags = sorted(set(state["tags"]) - set(want["tags"]))
    if stale_tags:
        iam.untag_role(RoleName=name, TagKeys=stale_tags)
    if any(state["tags"].get(k) != v for k, v in want["tags"].items()):
        iam.tag_role(RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in want["tags"].items()])
        changed.append("tags")
    for arn in sorted(set(want["managed_policy_arns"]) - set(state["managed_policy_arns"])):
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        changed.append(f"attached {arn}")
    for arn in sorted(set(state["managed_policy_arns"]) - set(want["managed_policy_arns"])):
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)
        changed.append(f"detached {arn}")
    for policy, document in sorted(want["inline_policies"].items()):
        found = state["inline_policies"].get(policy)
        if found is None or not same_policy(found, document):
            iam.put_role_policy(
                RoleName=name, PolicyName=policy, PolicyDocument=json.dumps(document)
            )
            changed.append(f"inline {policy}")
    for policy in sorted(set(state["inline_policies"]) - set(want["inline_policies"])):
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
        changed.append(f"removed inline {policy}")
    return changed


class CreateMemberRole:
    """``create-member-role``: the access's role in a member account, trusting only the
    central principals that hold the access there."""

    PERMISSIONS: tuple[str, ...] = PERMISSIONS

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        params = action.params
        name = params["role_name"]
        state = read_role_state(ctx.iam(action.account_id or ""), name)
        if state is None:
            return Live(exists=False)
        detail = {"role_name": name, "arn": state["arn"]}
        found = differences(state, params)
        if not found:
            return Live(exists=True, detail=detail)
        if _ours(state, _migration(params)):
            dropped = _dropped_principals(state["trust_policy"], params["trust_policy"])
            if dropped:
                # The plan's trust keeps everyone earlier plans put there (as the journal
                # had it when it was made); someone it does not know of came in since.
                # Narrowing would lock them out: refused, as a namesake is (FAILED, untouched).
                return Live(
                    exists=True,
                    difference=f"role {name}'s trust names {', '.join(dropped)} which this "
                    "plan does not: another plan was applied since this one was made; re-plan",
                    detail=detail,
                )
            # An earlier plan of this migration made it: brought to this plan (its trust only
            # grows), and its state now is what a rollback of this plan puts back (apply
            # records it).
            return Live(exists=False, detail={**detail, "previous": state, "differs": found})
        return Live(
            exists=True,
            difference=f"role {name} was not created by this migration (no {MIGRATION_TAG}="
            f"{_migration(params)} tag) and differs from the plan: " + "; ".join(found),
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
        params = action.params
        name = params["role_name"]
        if live.exists and live.difference:  # a namesake appeared while the process was gone
            raise ConflictError(action.id, live.difference)
        # The first attempt's record stands: a resumed attempt finds its own half-made role,
        # which is not what a rollback should put back.
        undo = (prior.undo if prior is not None else None) or {
            "role_name": name,
            "migration": _migration(params),
            **(
                {"previous": live.detail["previous"]}
                if "previous" in live.detail
                else {"created": True}
            ),
        }
        progress({"undo": undo})
        iam = ctx.iam(action.account_id or "")
        want = _planned_state(params)
        try:
            state = read_role_state(iam, name)
            created = state is None
            if state is None:
                extra = {}
                if params.get("permissions_boundary_arn"):
                    extra["PermissionsBoundary"] = params["permissions_boundary_arn"]
                role = iam.create_role(
                    RoleName=name,
                    Path=params["path"],
                    Description=params.get("description") or "",
                    MaxSessionDuration=params["max_session_duration"],
                    AssumeRolePolicyDocument=json.dumps(params["trust_policy"]),
                    Tags=list(params["tags"]),
                    **extra,
                )["Role"]
                state = {
                    **want,
                    "arn": role["Arn"],
                    "managed_policy_arns": [],
                    "inline_policies": {},
                }
            elif state["path"] != params["path"]:
                raise ActionError(
                    action.id,
                    f"role {name} is under path {state['path']} (plan: {params['path']}) and IAM "
                    "can't move a role: delete it or re-plan",
                )
            changed = _converge(iam, name, state, want)
        except ClientError as err:
            raise _failed(action.id, f"role {name}", err) from err
        log.info(
            "role %s %s in %s (%s)",
            name,
            "created" if created else "brought to the plan",
            action.account_id,
            ", ".join(changed) or "nothing else to change",
        )
        return Done(outcome={"role_name": name, "arn": state["arn"], "changed": changed}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        name = recorded.get("role_name")
        if not name:
            return {"skipped": "nothing recorded to remove"}
        iam = ctx.iam(entry.account_id or "")
        try:
            state = read_role_state(iam, name)
            if state is None:
                return {"skipped": f"role {name} is gone"}
            if not _ours(state, recorded.get("migration")):
                return {"skipped": f"role {name} is no longer ours ({MIGRATION_TAG} tag gone)"}
            previous = recorded.get("previous")
            if previous:
                restored = _converge(iam, name, state, previous)
                return {"restored": name, "with": restored}
            for arn in state["managed_policy_arns"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
            for policy in state["inline_policies"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
        except ClientError as err:
            if error_code(err) == "NoSuchEntity":
                return {"skipped": f"role {name} is gone"}
            raise _failed(entry.action_id, f"undo role {name}", err) from err
        return {"removed": name}


def _dropped_principals(live: Any, planned: Any) -> list[str]:
    """The principals a live trust lets in that a planned one does not (a put would drop)."""
    return sorted(
        set(allowed_principals(_document(live) or {}))
        - set(allowed_principals(_document(planned) or {}))
    )


def trust_problems_against_plan(trust: Any, params: dict[str, Any], account_id: str) -> list[str]:
    """What a member role's live trust lacks of the plan's, or lets in that it must not.

    A later plan of the migration may have grown the trust (its own people besides ours), so
    the trust need not equal this plan's: every planned principal must be let in, with MFA
    when the plan requires it, and nothing may open the role to an account root, ``*``, a
    third party or a federated or service principal
    (:func:`domain.trust_policy.central_trust_problems`).

    Args:
        trust: The role's live ``AssumeRolePolicyDocument``.
        params: The ``create-member-role`` action's params.
        account_id: The member account the role is in.

    Returns:
        One phrase per problem; empty when the plan's people may switch in and only named
        people may.
    """
    live = _document(trust) or {}
    planned_doc = _document(params["trust_policy"]) or {}
    planned = allowed_principals(planned_doc)
    found = allowed_principals(live)
    problems = []
    missing = sorted(set(planned) - set(found))
    if missing:
        problems.append(f"its trust policy does not name {', '.join(missing)}")
    without_mfa = sorted(p for p, mfa in planned.items() if mfa and found.get(p) is False)
    if without_mfa:
        problems.append(
            f"its trust policy lets {', '.join(without_mfa)} in without "
            "Bool aws:MultiFactorAuthPresent = true"
        )
    central = _tag_map(params.get("tags") or []).get(CENTRAL_ACCOUNT_TAG) or _account_of(
        next(iter(sorted(planned)), "")
    )
    problems.extend(
        central_trust_problems(
            live,
            role_account=account_id,
            central_account=central,
            # The plan requires MFA exactly when people arrive as the central account's users.
            people_are_users=any(planned.values()),
        )
    )
    return problems


def _account_of(arn: str) -> str:
    return arn.split(":")[4] if arn.count(":") >= 5 else ""


def verify_member_roles(ctx: ExecutionContext, actions: list[PlanAction]) -> list[str]:
    """Check that each done ``create-member-role`` exists and lets its planned people in, and
    only named people (:func:`trust_problems_against_plan`).

    Returns:
        One message per role that is missing or whose trust is wrong:
        ``"role NAME in ACCOUNT: ..."``.
    """
    problems = []
    for action in actions:
        name = action.params["role_name"]
        account_id = action.account_id or ""
        try:
            role = ctx.iam(account_id).get_role(RoleName=name)["Role"]
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            problems.append(f"role {name} in {account_id}: missing")
            continue
        trust = role.get("AssumeRolePolicyDocument") or {}
        problems.extend(
            f"role {name} in {account_id}: {problem}"
            for problem in trust_problems_against_plan(trust, action.params, account_id)
        )
    return problems


HANDLERS: dict[str, Handler] = {"create-member-role": CreateMemberRole()}
