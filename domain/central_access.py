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
from domain.central_roles import (
    CREATED_BY,
    INLINE_POLICY_NAME,
    access_group_name,
    assume_policy,
    assume_policy_name,
    member_role_name,
    role_arn,
    trust_policy,
)
from domain.central_spec import IAM_USERS, Central
from domain.plan import PlanAction, Stage, sha256_of
from domain.policy_documents import canonical_json
from domain.records import Finding
from domain.trust_policy import central_trust_problems

# IAM quotas (IAM user guide, "IAM and AWS STS quotas"), counted without whitespace.
MAX_TRUST_CHARS = 2_048  # role trust policy (ACLSizePerRole default; 4,096 after an increase)
MAX_MANAGED_PER_ROLE = 10  # managed policies attached to a role (default)
MAX_ROLE_INLINE_CHARS = 10_240  # a role's inline policies, aggregate
MAX_GROUP_INLINE_CHARS = 5_120  # a group's inline policies, aggregate

_Key = tuple[str, str]  # (account id, IAM user) or (account id, access name)


def _chars(document: dict[str, Any] | None) -> int:
    """A policy's size as IAM counts it against its quotas: characters, whitespace not counted."""
    if not document:
        return 0
    return sum(1 for c in canonical_json(document) if not c.isspace())


@dataclass
class _Role:
    """One member role to plan: an access in one account, and who may switch into it there."""

    account_id: str
    access: str
    principals: dict[str, str] = field(default_factory=dict)  # central ARN -> its name
    people: dict[str, str] = field(default_factory=dict)  # IAM user -> its central ARN
    # The IAM users whose own access this is (synthesis's reasons): the others only arrive
    # as a principal that holds it (several people mapped to one federated role).
    own: set[str] = field(default_factory=set)

    def holders(self) -> list[str]:
        return [f"user {name}" for name in sorted(self.people)]


@dataclass
class _Planned:
    """What planning found: blocking findings' reasons per person, and roles held back."""

    findings: list[Finding] = field(default_factory=list)
    blocked: dict[_Key, str] = field(default_factory=dict)
    held_roles: set[_Key] = field(default_factory=set)

    def block(self, finding: Finding, roles: list[_Role]) -> None:
        """Record a finding; a blocking one holds back ``roles`` and their people."""
        self.findings.append(finding)
        if finding.severity != "blocking":
            return
        for role in roles:
            self.held_roles.add((role.account_id, role.access))
        self.block_people(finding, [(r.account_id, name) for r in roles for name in r.people])

    def block_people(self, finding: Finding, people: list[_Key]) -> None:
        """Hold back these people's access (their roles stay for the others who hold them)."""
        for key in people:
            self.blocked.setdefault(key, f"{finding.kind}: {finding.message}")


def _roles(access: AccessPlan, planned: _Planned) -> dict[_Key, _Role]:
    """(account, access) -> the role, from who each create-assignment gives access to."""
    assignments = {a.id: a.params for a in access.actions if a.kind == "create-assignment"}
    roles: dict[_Key, _Role] = {}
    groups: dict[_Key, list[str]] = defaultdict(list)
    for (account_id, iam_user), action_ids in sorted(access.assignment_ids.items()):
        for action_id in action_ids:
            params = assignments[action_id]
            name = params["permission_set_name"]
            if params["principal_type"] != "USER":
                # A trust policy can't name a group; central mapping has none, so this is
                # an identity-store group mapping left in a central-roles spec.
                groups[(account_id, name)].append(iam_user)
                continue
            role = roles.setdefault((account_id, name), _Role(account_id, name))
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
            [_Role(account_id, name, people={p: "" for p in people})],
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
    role: _Role, definition: dict[str, Any], central: Central, migration: str
) -> dict[str, Any]:
    principals = sorted(role.principals)
    boundary = definition.get("permissions_boundary")
    return {
        "role_name": member_role_name(central, role.access),
        "path": central.role_path,
        "access": role.access,
        "fingerprint": definition.get("fingerprint"),
        "description": definition.get("description", ""),
        "trust_policy": trust_policy(principals, central),
        "principals": principals,
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


def _role_finding(role: _Role, kind: str, message: str, **details: Any) -> Finding:
    holders = role.holders()
    return Finding(
        severity="blocking",
        kind=kind,
        message=f"role {details['role_name']} ({role.access}) in {role.account_id}: {message}",
        account_id=role.account_id,
        subject=", ".join(holders),
        details={"access": role.access, "holders": holders, **details},
    )


def _check_role(role: _Role, params: dict[str, Any], central: Central, planned: _Planned) -> None:
    """The role's trust lint and IAM quotas: each violation a blocking finding."""
    name = params["role_name"]
    for problem in central_trust_problems(
        params["trust_policy"],
        role_account=role.account_id,
        central_account=central.account,
        people_are_users=central.arrive == IAM_USERS,
    ):
        planned.block(_role_finding(role, "trust-policy", problem, role_name=name), [role])
    trust = _chars(params["trust_policy"])
    if trust > MAX_TRUST_CHARS:
        planned.block(
            _role_finding(
                role,
                "quota-trust-policy-size",
                f"trust policy of {len(role.principals)} principal(s) is {trust:,} characters > "
                f"{MAX_TRUST_CHARS:,} (IAM quota ACLSizePerRole; up to 4,096 after an increase)",
                role_name=name,
                characters=trust,
                limit=MAX_TRUST_CHARS,
            ),
            [role],
        )
    managed = len(params["managed_policy_arns"])
    if managed > MAX_MANAGED_PER_ROLE:
        planned.block(
            _role_finding(
                role,
                "quota-managed-policies-per-role",
                f"{managed} managed policies > {MAX_MANAGED_PER_ROLE} per role (IAM quota)",
                role_name=name,
                managed_policies=managed,
                limit=MAX_MANAGED_PER_ROLE,
            ),
            [role],
        )
    inline = _chars(params["inline_policy"])
    if inline > MAX_ROLE_INLINE_CHARS:
        planned.block(
            _role_finding(
                role,
                "quota-role-inline-size",
                f"inline policy is {inline:,} characters > {MAX_ROLE_INLINE_CHARS:,} (IAM quota "
                "for a role's inline policies, whitespace not counted)",
                role_name=name,
                characters=inline,
                limit=MAX_ROLE_INLINE_CHARS,
            ),
            [role],
        )


def _role_arns(
    central: Central, access: str, accounts: set[str], earlier: dict[str, list[str]]
) -> list[str]:
    """The member roles an access's assume policy covers: this plan's and earlier waves'."""
    every = accounts | set(earlier.get(access, []))
    return sorted(role_arn(a, central, access) for a in every)


def _check_central_side(
    roles: dict[_Key, _Role], central: Central, earlier: dict[str, list[str]], planned: _Planned
) -> None:
    """The central account's inline policies: a group's (iam-users) or each federated role's
    (saml-roles, all its accesses' policies together) against IAM's aggregate quotas."""
    by_access: dict[str, list[_Role]] = defaultdict(list)
    for role in roles.values():
        by_access[role.access].append(role)
    documents = {
        name: assume_policy(
            _role_arns(central, name, {r.account_id for r in of_access}, earlier), central
        )
        for name, of_access in by_access.items()
    }
    if central.arrive == IAM_USERS:
        for name, of_access in sorted(by_access.items()):
            size = _chars(documents[name])
            if size <= MAX_GROUP_INLINE_CHARS:
                continue
            holders = sorted({h for r in of_access for h in r.holders()})
            planned.block(
                Finding(
                    severity="blocking",
                    kind="quota-group-inline-size",
                    message=f"group {access_group_name(central, name)} ({name}) in "
                    f"{central.account}: its assume policy is {size:,} characters > "
                    f"{MAX_GROUP_INLINE_CHARS:,} (IAM quota for a group's inline policies)",
                    account_id=central.account,
                    subject=", ".join(holders),
                    details={"access": name, "characters": size, "limit": MAX_GROUP_INLINE_CHARS},
                ),
                of_access,
            )
        return
    by_federated: dict[str, list[_Role]] = defaultdict(list)
    for role in roles.values():
        for arn in role.principals:
            by_federated[arn].append(role)
    for arn, held in sorted(by_federated.items()):
        size = sum(_chars(documents[name]) for name in sorted({r.access for r in held}))
        if size <= MAX_ROLE_INLINE_CHARS:
            continue
        name = arn.rsplit("/", 1)[-1]
        # Only the people arriving as this role are held back, in each role it is trusted by.
        theirs = [
            _Role(r.account_id, r.access, people={p: a for p, a in r.people.items() if a == arn})
            for r in held
        ]
        holders = sorted({h for r in theirs for h in r.holders()})
        finding = Finding(
            severity="blocking",
            kind="quota-role-inline-size",
            message=f"federated role {name} in {central.account}: its assume policies are "
            f"{size:,} characters > {MAX_ROLE_INLINE_CHARS:,} (IAM quota for a role's "
            "inline policies, aggregate)",
            account_id=central.account,
            subject=", ".join(holders),
            details={"role": arn, "characters": size, "limit": MAX_ROLE_INLINE_CHARS},
        )
        planned.findings.append(finding)
        planned.block_people(finding, [(r.account_id, p) for r in theirs for p in r.people])


def _shared_federated_roles(roles: dict[_Key, _Role], central: Central, planned: _Planned) -> None:
    """saml-roles: a federated role several people arrive as gives each the others' access."""
    grants: dict[str, dict[str, set[_Key]]] = defaultdict(lambda: defaultdict(set))
    for role in roles.values():
        for person, arn in role.people.items():
            grants[arn].setdefault(person, set())
            if person in role.own:
                grants[arn][person].add((role.account_id, role.access))
    for arn, by_person in sorted(grants.items()):
        if len({frozenset(g) for g in by_person.values()}) < 2:
            continue
        name = arn.rsplit("/", 1)[-1]
        people = sorted(by_person)
        planned.findings.append(
            Finding(
                severity="warning",
                kind="federated-role-shared",
                message=f"{len(people)} people with different access arrive as the federated "
                f"role {name} ({', '.join(people)}): each gains the others' access through it; "
                "give each access its own federated role in the IdP to keep them apart",
                account_id=central.account,
                subject=f"role {name}",
                details={
                    "role": arn,
                    "people": {p: sorted(f"{a}:{n}" for a, n in g) for p, g in by_person.items()},
                },
            )
        )


def _kept(roles: dict[_Key, _Role], planned: _Planned, blocked: dict[_Key, str]) -> list[_Role]:
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
        kept.append(_Role(role.account_id, role.access, principals, people))
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
    assignment_ids: dict[_Key, list[str]] = field(default_factory=dict)
    access_of_user: dict[_Key, list[str]] = field(default_factory=dict)

    def gives(self, role: _Role, arn: str, action_ids: list[str]) -> None:
        """The actions that give the people arriving as ``arn`` the role's access."""
        for person, principal in sorted(role.people.items()):
            if principal != arn:
                continue
            self.assignment_ids.setdefault((role.account_id, person), []).extend(action_ids)
            self.access_of_user.setdefault((role.account_id, person), []).append(role.access)


def _central_actions(
    kept: list[_Role],
    role_ids: dict[_Key, str],
    central: Central,
    earlier: dict[str, list[str]],
    out: _Actions,
) -> None:
    """The central account's side: groups, assume policies and memberships (or the policies
    on federated roles), and which of them give each person their access."""
    account = central.account
    by_access: dict[str, list[_Role]] = defaultdict(list)
    for role in kept:
        by_access[role.access].append(role)
    for access, roles in sorted(by_access.items()):
        arns = _role_arns(central, access, {r.account_id for r in roles}, earlier)
        policy_name = assume_policy_name(central, access)
        document = assume_policy(arns, central)
        names = {a: n for r in roles for a, n in r.principals.items()}
        if central.arrive == IAM_USERS:
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
                    {
                        "principal_type": "group",
                        "principal_name": group,
                        "policy_name": policy_name,
                        "document": document,
                        "role_arns": arns,
                        "access": access,
                    },
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
                    out.gives(
                        role,
                        arn,
                        [role_ids[(role.account_id, access)], policy_id, member_ids[arn]],
                    )
            continue
        for arn, federated in sorted(names.items()):
            policy_id = f"provision:put-access-policy:{account}:role:{federated}:{policy_name}"
            out.actions.append(
                _action(
                    "put-access-policy",
                    policy_id,
                    account,
                    f"role {federated}: {policy_name}",
                    {
                        "principal_type": "role",
                        "principal_name": federated,
                        "policy_name": policy_name,
                        "document": document,
                        "role_arns": arns,
                        "access": access,
                    },
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
) -> AccessPlan:
    """Identity Center's planned access turned into the ``central-roles`` target's actions.

    One ``create-member-role`` per (account, access) trusting exactly the central principals
    of the people holding it there; per access, in the central account, a
    ``create-access-group`` with its ``put-access-policy`` and an ``add-group-member`` per
    person (people as IAM users), or a ``put-access-policy`` on each federated role (SAML).
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

    Returns:
        The same dataclass: the central-roles actions, the kept sets and assignments,
        ``assignment_ids`` (role, assume policy and membership per person and account),
        ``permission_sets_of_user`` (access names), every finding and every blocked person.
    """
    earlier = earlier_roles or {}
    planned = _Planned()
    roles = _roles(access, planned)
    definitions = {ps["name"]: ps for ps in access.permission_sets}
    params = {
        key: _role_params(role, definitions[role.access], central, migration)
        for key, role in roles.items()
    }
    for key, role in sorted(roles.items()):
        _check_role(role, params[key], central, planned)
    _check_central_side(roles, central, earlier, planned)
    if central.arrive != IAM_USERS:
        _shared_federated_roles(roles, central, planned)
    blocked = dict(access.blocked)
    for key, reason in planned.blocked.items():
        blocked.setdefault(key, reason)
    kept = _kept(roles, planned, blocked)

    out = _Actions()
    role_ids: dict[_Key, str] = {}
    for role in kept:
        role_params = _role_params(role, definitions[role.access], central, migration)
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
    _central_actions(kept, role_ids, central, earlier, out)

    findings = [*access.findings, *planned.findings]
    left_out = sorted(set(roles) - {(r.account_id, r.access) for r in kept})
    if left_out:
        findings.append(
            Finding(
                severity="info",
                kind="blocked-access-left-out",
                message=f"{len(left_out)} member role(s) of people with blocking errors are left "
                "out of this plan: they are planned once the errors are fixed",
                details={"roles": [f"{a}:{n}" for a, n in left_out]},
            )
        )
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


def _references(definition: dict[str, Any]) -> list[dict[str, str]]:
    """The customer-managed policies a role of the access names: attached and its boundary."""
    refs = list(definition.get("customer_managed_policies") or [])
    boundary = (definition.get("permissions_boundary") or {}).get(
        "customer_managed_policy_reference"
    )
    return [*refs, boundary] if boundary else refs
