"""The ``central-roles`` target's provision actions, planned from the synthesized access.

Identity Center's plan (:func:`domain.access_plan.plan_access`) already holds what each person
gets: de-duplicated accesses (the permission sets' definitions) and, per account, who holds
which (the assignments, whose principals are the central account's users or federated roles).
This turns it into one member role per (account, access) whose trust names exactly those
people, and the central account's side that lets them switch into it: per access a group
with an assume policy and its members (people as IAM users), or that policy on each
federated role (people arriving through SAML). Roles whose trust policy or size breaks a rule
are held back with their people, as Identity Center's blocking findings hold back theirs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from domain.access import boundary_policy_arn
from domain.access_plan import AccessPlan
from domain.central_access_checks import (
    HeldBack,
    MemberRole,
    RoleKey,
    check_central_side,
    check_role,
    covered_role_arns,
    warn_shared_federated_roles,
)
from domain.central_roles import (
    CREATED_BY,
    INLINE_POLICY_NAME,
    access_group_name,
    assume_policy,
    assume_policy_name,
    member_role_name,
    trust_policy,
)
from domain.central_spec import IAM_USERS, Central
from domain.plan import PlanAction, Stage, sha256_of
from domain.records import Finding

# (member account, role name) -> the central principals earlier plans put in its trust.
EarlierPrincipals = dict[tuple[str, str], list[str]]


def _roles(access: AccessPlan, planned: HeldBack) -> dict[RoleKey, MemberRole]:
    """(account, access) -> the role, from who each create-assignment gives access to."""
    assignments = {a.id: a.params for a in access.actions if a.kind == "create-assignment"}
    roles: dict[RoleKey, MemberRole] = {}
    groups: dict[RoleKey, list[str]] = defaultdict(list)
    for (account_id, iam_user), action_ids in sorted(access.assignment_ids.items()):
        for action_id in action_ids:
            params = assignments[action_id]
            name = params["permission_set_name"]
            if params["principal_type"] != "USER":
                # A trust policy can't name a group; central mapping has none, so this is
                # an identity-store group mapping left in a central-roles spec.
                groups[(account_id, name)].append(iam_user)
                continue
            role = roles.setdefault((account_id, name), MemberRole(account_id, name))
            role.principals[params["principal_id"]] = params["principal_name"]
            role.people[iam_user] = params["principal_id"]
            if f"user {iam_user}" in str(params.get("reason", "")).split("; "):
                role.own.add(iam_user)
    for (account_id, name), people in sorted(groups.items()):
        holders = [f"user {p}" for p in sorted(set(people))]
        planned.block(
            Finding(
                severity="blocking",
                kind="central-group-principal",
                message=f"access {name} in {account_id} is given to a group, which a trust "
                "policy can't name: central-roles maps people to the central account's users "
                "or roles, not identity-store groups (remove the group mappings)",
                account_id=account_id,
                subject=", ".join(holders),
                details={"access": name, "holders": holders},
            ),
            [MemberRole(account_id, name, people={p: "" for p in people})],
        )
    return roles


def _managed_arns(definition: dict[str, Any], account_id: str) -> list[str]:
    """AWS-managed ARNs as they are, customer-managed references resolved in the account."""
    customer = [
        f"arn:aws:iam::{account_id}:policy{ref.get('path') or '/'}{ref['name']}"
        for ref in definition.get("customer_managed_policies") or []
    ]
    return sorted({*definition.get("aws_managed_policy_arns", []), *customer})


def _role_params(
    role: MemberRole,
    definition: dict[str, Any],
    central: Central,
    migration: str,
    kept_principals: EarlierPrincipals,
) -> dict[str, Any]:
    name = member_role_name(central, role.access)
    # Who earlier plans put in this role stays: each put replaces the whole trust, and
    # people already migrated (since disabled, so no longer planned) switch in through it.
    earlier = set(kept_principals.get((role.account_id, name), ())) - set(role.principals)
    principals = sorted({*role.principals, *earlier})
    boundary = definition.get("permissions_boundary")
    return {
        "role_name": name,
        "path": central.role_path,
        "access": role.access,
        "fingerprint": definition.get("fingerprint"),
        "description": definition.get("description", ""),
        "trust_policy": trust_policy(principals, central),
        "principals": principals,
        "earlier_principals": sorted(earlier),
        "max_session_duration": central.max_session_hours * 3600,
        "permissions_boundary_arn": boundary_policy_arn(boundary, role.account_id)
        if boundary
        else None,
        "managed_policy_arns": _managed_arns(definition, role.account_id),
        "inline_policy": definition.get("inline_policy"),
        "inline_policy_name": INLINE_POLICY_NAME,
        "tags": [
            {"Key": "iamc:migration", "Value": migration},
            {"Key": "iamc:access", "Value": role.access},
            {"Key": "iamc:created-by", "Value": CREATED_BY},
            {"Key": "iamc:central-account", "Value": central.account},
        ],
    }


def _kept(
    roles: dict[RoleKey, MemberRole], planned: HeldBack, blocked: dict[RoleKey, str]
) -> list[MemberRole]:
    """The roles planned now: not held back, trusting the principals of unblocked people only."""
    kept = []
    for key, role in sorted(roles.items()):
        if key in planned.held_roles:
            continue
        # A principal stays while one of its IAM users here is not blocked, as an Identity
        # Center assignment stays while it covers one unblocked user.
        people = {p: a for p, a in role.people.items() if (role.account_id, p) not in blocked}
        if not people:
            continue
        arns = set(people.values())
        principals = {a: n for a, n in role.principals.items() if a in arns}
        kept.append(MemberRole(role.account_id, role.access, principals, people))
    return kept


def _action(
    kind: str,
    action_id: str,
    account_id: str,
    target: str,
    params: dict[str, Any],
    depends_on: list[str] | None = None,
) -> PlanAction:
    return PlanAction(
        id=action_id,
        stage=Stage.PROVISION,
        kind=kind,
        account_id=account_id,
        target=target,
        target_fingerprint=sha256_of(params),
        params=params,
        depends_on=depends_on or [],
    )


@dataclass
class _Actions:
    actions: list[PlanAction] = field(default_factory=list)
    assignment_ids: dict[RoleKey, list[str]] = field(default_factory=dict)
    access_of_user: dict[RoleKey, list[str]] = field(default_factory=dict)

    def gives(self, role: MemberRole, arn: str, action_ids: list[str]) -> None:
        """The actions that give the people arriving as ``arn`` the role's access."""
        for person, principal in sorted(role.people.items()):
            if principal != arn:
                continue
            self.assignment_ids.setdefault((role.account_id, person), []).extend(action_ids)
            self.access_of_user.setdefault((role.account_id, person), []).append(role.access)


def _central_actions(
    kept: list[MemberRole],
    role_ids: dict[RoleKey, str],
    central: Central,
    earlier: dict[str, list[str]],
    out: _Actions,
) -> None:
    """The central account's side: groups, assume policies and memberships (or the policies
    on federated roles), and which of them give each person their access."""
    by_access: dict[str, list[MemberRole]] = defaultdict(list)
    for role in kept:
        by_access[role.access].append(role)
    for access, roles in sorted(by_access.items()):
        arns = covered_role_arns(central, access, {r.account_id for r in roles}, earlier)
        policy = {
            "policy_name": assume_policy_name(central, access),
            "document": assume_policy(arns, central),
            "role_arns": arns,
            "access": access,
        }
        if central.arrive == IAM_USERS:
            _group_actions(roles, role_ids, central, policy, out)
        else:
            _federated_role_actions(roles, role_ids, central, policy, out)


def _group_actions(
    roles: list[MemberRole],
    role_ids: dict[RoleKey, str],
    central: Central,
    policy: dict[str, Any],
    out: _Actions,
) -> None:
    """iam-users: the access's group, its assume policy, and each person's membership."""
    account, access, policy_name = central.account, policy["access"], policy["policy_name"]
    names = {a: n for r in roles for a, n in r.principals.items()}
    group = access_group_name(central, access)
    group_id = f"provision:create-access-group:{account}:{group}"
    out.actions.append(
        _action(
            "create-access-group",
            group_id,
            account,
            group,
            {"group_name": group, "path": central.role_path, "access": access},
        )
    )
    policy_id = f"provision:put-access-policy:{account}:group:{group}:{policy_name}"
    out.actions.append(
        _action(
            "put-access-policy",
            policy_id,
            account,
            f"group {group}: {policy_name}",
            {"principal_type": "group", "principal_name": group, **policy},
            [group_id],
        )
    )
    member_ids = {}
    for arn, user in sorted(names.items()):
        member_ids[arn] = f"provision:add-group-member:{account}:{group}:{user}"
        out.actions.append(
            _action(
                "add-group-member",
                member_ids[arn],
                account,
                f"{user} -> {group}",
                {"group_name": group, "user_name": user, "access": access},
                [group_id],
            )
        )
    for role in roles:
        for arn in sorted(role.principals):
            out.gives(role, arn, [role_ids[(role.account_id, access)], policy_id, member_ids[arn]])


def _federated_role_actions(
    roles: list[MemberRole],
    role_ids: dict[RoleKey, str],
    central: Central,
    policy: dict[str, Any],
    out: _Actions,
) -> None:
    """saml-roles: the access's assume policy on each federated role its people arrive as."""
    account, access, policy_name = central.account, policy["access"], policy["policy_name"]
    names = {a: n for r in roles for a, n in r.principals.items()}
    for arn, federated in sorted(names.items()):
        policy_id = f"provision:put-access-policy:{account}:role:{federated}:{policy_name}"
        out.actions.append(
            _action(
                "put-access-policy",
                policy_id,
                account,
                f"role {federated}: {policy_name}",
                {"principal_type": "role", "principal_name": federated, **policy},
            )
        )
        for role in roles:
            if arn in role.principals:
                out.gives(role, arn, [role_ids[(role.account_id, access)], policy_id])


def central_access(
    access: AccessPlan,
    *,
    central: Central,
    migration: str,
    earlier_roles: dict[str, list[str]] | None,
    earlier_principals: EarlierPrincipals | None = None,
) -> AccessPlan:
    """Identity Center's planned access turned into the ``central-roles`` target's actions.

    One ``create-member-role`` per (account, access) trusting exactly the central principals
    of the people holding it there and those earlier plans put in it; per access, in the
    central account, a ``create-access-group`` with its ``put-access-policy`` and an
    ``add-group-member`` per person (people as IAM users), or a ``put-access-policy`` on each
    federated role (SAML).
    A role whose trust policy breaks :func:`domain.trust_policy.central_trust_problems`, or
    that breaks an IAM quota, is a blocking finding and is left out with its people, who are
    ``blocked`` (skipped, never disabled).

    Args:
        access: :func:`domain.access_plan.plan_access`'s result (assignments' principals are
            central principal ARNs).
        central: The spec's ``[central]``.
        migration: The migration's name (each role's ``iamc:migration`` tag).
        earlier_roles: Access name -> member accounts where an earlier plan of this migration
            created the access's role (:func:`domain.waves.central_role_accounts`): the
            assume policies cover them too, since each put replaces the whole document.
        earlier_principals: (member account, role name) -> the central principals earlier
            plans of this migration (done, not rolled back) put in that role's trust
            (:func:`domain.waves.central_role_principals`): the trust keeps them, since each
            put replaces it whole and they may already sign in through it alone. A role's
            ``principals`` are this plan's and these; ``earlier_principals`` those only
            earlier plans name.

    Returns:
        The same dataclass: the central-roles actions, the kept sets and assignments,
        ``assignment_ids`` (role, assume policy and membership per person and account),
        ``permission_sets_of_user`` (access names), every finding and every blocked person.
    """
    earlier = earlier_roles or {}
    kept_principals = earlier_principals or {}
    planned = HeldBack()
    roles = _roles(access, planned)
    definitions = {ps["name"]: ps for ps in access.permission_sets}
    _check(roles, definitions, central, migration, earlier, kept_principals, planned)
    blocked = dict(access.blocked)
    for key, reason in planned.blocked.items():
        blocked.setdefault(key, reason)
    kept = _kept(roles, planned, blocked)

    out = _Actions()
    role_ids = _member_role_actions(kept, definitions, central, migration, kept_principals, out)
    _central_actions(kept, role_ids, central, earlier, out)

    findings = [*access.findings, *planned.findings, *_left_out(roles, kept)]
    return _kept_plan(access, kept, definitions, findings, out, blocked)


def _kept_plan(
    access: AccessPlan,
    kept: list[MemberRole],
    definitions: dict[str, dict[str, Any]],
    findings: list[Finding],
    out: _Actions,
    blocked: dict[tuple[str, str], str],
) -> AccessPlan:
    """The access plan of the roles kept: their assignments, sets and customer policies."""
    kept_keys = {(r.account_id, r.access): set(r.principals) for r in kept}
    assignments = [
        a
        for a in access.assignments
        if a["principal_id"] in kept_keys.get((a["account_id"], a["permission_set_name"]), ())
    ]
    used = {name for _, name in kept_keys}
    referenced = {
        (account_id, f"{ref.get('path') or '/'}{ref['name']}")
        for account_id, name in kept_keys
        for ref in _references(definitions[name])
    }
    return AccessPlan(
        findings=sorted(
            findings,
            key=lambda f: (f.severity, f.kind, f.account_id or "", f.subject or "", f.message),
        ),
        actions=out.actions,
        permission_sets=[ps for ps in access.permission_sets if ps["name"] in used],
        assignments=assignments,
        required_customer_policies=[
            r
            for r in access.required_customer_policies
            if (r["account_id"], f"{r['path']}{r['name']}") in referenced
        ],
        assignment_ids=out.assignment_ids,
        permission_sets_of_user=out.access_of_user,
        blocked=blocked,
    )


def _left_out(roles: dict[RoleKey, MemberRole], kept: list[MemberRole]) -> list[Finding]:
    """An info finding naming the member roles held back with their people, if any were."""
    left_out = sorted(set(roles) - {(r.account_id, r.access) for r in kept})
    if not left_out:
        return []
    return [
        Finding(
            severity="info",
            kind="blocked-access-left-out",
            message=f"{len(left_out)} member role(s) of people with blocking errors are left "
            "out of this plan: they are planned once the errors are fixed",
            details={"roles": [f"{a}:{n}" for a, n in left_out]},
        )
    ]


def _check(
    roles: dict[RoleKey, MemberRole],
    definitions: dict[str, dict[str, Any]],
    central: Central,
    migration: str,
    earlier: dict[str, list[str]],
    kept_principals: EarlierPrincipals,
    planned: HeldBack,
) -> None:
    """Every role's trust lint and quotas, the central side's quotas, shared federated roles."""
    params = {
        key: _role_params(role, definitions[role.access], central, migration, kept_principals)
        for key, role in roles.items()
    }
    for key, role in sorted(roles.items()):
        check_role(role, params[key], central, planned)
    check_central_side(roles, central, earlier, planned)
    if central.arrive != IAM_USERS:
        warn_shared_federated_roles(roles, central, planned)


def _member_role_actions(
    kept: list[MemberRole],
    definitions: dict[str, dict[str, Any]],
    central: Central,
    migration: str,
    kept_principals: EarlierPrincipals,
    out: _Actions,
) -> dict[RoleKey, str]:
    """A ``create-member-role`` per kept role; returns each (account, access)'s action id."""
    role_ids: dict[RoleKey, str] = {}
    for role in kept:
        role_params = _role_params(
            role, definitions[role.access], central, migration, kept_principals
        )
        name = role_params["role_name"]
        role_ids[(role.account_id, role.access)] = (
            f"provision:create-member-role:{role.account_id}:{name}"
        )
        out.actions.append(
            _action(
                "create-member-role",
                role_ids[(role.account_id, role.access)],
                role.account_id,
                name,
                role_params,
            )
        )
    return role_ids


def _references(definition: dict[str, Any]) -> list[dict[str, str]]:
    """The customer-managed policies a role of the access names: attached and its boundary."""
    refs = list(definition.get("customer_managed_policies") or [])
    boundary = (definition.get("permissions_boundary") or {}).get(
        "customer_managed_policy_reference"
    )
    return [*refs, boundary] if boundary else refs
