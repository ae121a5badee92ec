"""The ``central-roles`` plan's member roles and what holds one back: trust lint, IAM quotas.

:func:`domain.central_access.central_access` gathers a :class:`MemberRole` per (account,
access), checks each here, and leaves out what a blocking finding holds back (:class:`HeldBack`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from domain.central_roles import access_group_name, assume_policy, role_arn
from domain.central_spec import IAM_USERS, Central
from domain.policy_documents import canonical_json
from domain.records import Finding
from domain.trust_policy import central_trust_problems

# IAM quotas (IAM user guide, "IAM and AWS STS quotas"), counted without whitespace.
MAX_TRUST_CHARS = 2_048  # role trust policy (ACLSizePerRole default; 4,096 after an increase)
MAX_MANAGED_PER_ROLE = 10  # managed policies attached to a role (default)
MAX_ROLE_INLINE_CHARS = 10_240  # a role's inline policies, aggregate
MAX_GROUP_INLINE_CHARS = 5_120  # a group's inline policies, aggregate

RoleKey = tuple[str, str]  # (account id, IAM user) or (account id, access name)


def _chars(document: dict[str, Any] | None) -> int:
    """A policy's size as IAM counts it against its quotas: characters, whitespace not counted."""
    if not document:
        return 0
    return sum(1 for c in canonical_json(document) if not c.isspace())


@dataclass
class MemberRole:
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
class HeldBack:
    """What planning found: blocking findings' reasons per person, and roles held back."""

    findings: list[Finding] = field(default_factory=list)
    blocked: dict[RoleKey, str] = field(default_factory=dict)
    held_roles: set[RoleKey] = field(default_factory=set)

    def block(self, finding: Finding, roles: list[MemberRole]) -> None:
        """Record a finding; a blocking one holds back ``roles`` and their people."""
        self.findings.append(finding)
        if finding.severity != "blocking":
            return
        for role in roles:
            self.held_roles.add((role.account_id, role.access))
        self.block_people(finding, [(r.account_id, name) for r in roles for name in r.people])

    def block_people(self, finding: Finding, people: list[RoleKey]) -> None:
        """Hold back these people's access (their roles stay for the others who hold them)."""
        for key in people:
            self.blocked.setdefault(key, f"{finding.kind}: {finding.message}")


def _role_finding(role: MemberRole, kind: str, message: str, **details: Any) -> Finding:
    holders = role.holders()
    return Finding(
        severity="blocking",
        kind=kind,
        message=f"role {details['role_name']} ({role.access}) in {role.account_id}: {message}",
        account_id=role.account_id,
        subject=", ".join(holders),
        details={"access": role.access, "holders": holders, **details},
    )


def check_role(
    role: MemberRole, params: dict[str, Any], central: Central, planned: HeldBack
) -> None:
    """The role's trust lint and IAM quotas: each violation a blocking finding.

    Args:
        role: The member role.
        params: Its ``create-member-role`` params (trust policy, managed and inline policies).
        central: The spec's ``[central]``.
        planned: Where findings go and what they hold back.
    """
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
                f"trust policy of {len(params['principals'])} principal(s) is {trust:,} "
                f"characters > {MAX_TRUST_CHARS:,} (IAM quota ACLSizePerRole; up to 4,096 "
                "after an increase)",
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


def covered_role_arns(
    central: Central, access: str, accounts: set[str], earlier: dict[str, list[str]]
) -> list[str]:
    """The member roles an access's assume policy covers: this plan's and earlier waves'.

    Args:
        central: The spec's ``[central]``.
        access: The access's name.
        accounts: The member accounts this plan creates its role in.
        earlier: Access name -> the member accounts earlier plans created its role in.
    """
    every = accounts | set(earlier.get(access, []))
    return sorted(role_arn(a, central, access) for a in every)


def check_central_side(
    roles: dict[RoleKey, MemberRole],
    central: Central,
    earlier: dict[str, list[str]],
    planned: HeldBack,
) -> None:
    """The central account's inline policies: a group's (iam-users) or each federated role's
    (saml-roles, all its accesses' policies together) against IAM's aggregate quotas.

    Args:
        roles: (account, access) -> the member role.
        central: The spec's ``[central]``.
        earlier: Access name -> the member accounts earlier plans created its role in.
        planned: Where findings go and what they hold back.
    """
    by_access: dict[str, list[MemberRole]] = defaultdict(list)
    for role in roles.values():
        by_access[role.access].append(role)
    documents = {
        name: assume_policy(
            covered_role_arns(central, name, {r.account_id for r in of_access}, earlier), central
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
    by_federated: dict[str, list[MemberRole]] = defaultdict(list)
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
            MemberRole(
                r.account_id, r.access, people={p: a for p, a in r.people.items() if a == arn}
            )
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


def warn_shared_federated_roles(
    roles: dict[RoleKey, MemberRole], central: Central, planned: HeldBack
) -> None:
    """saml-roles: a federated role several people arrive as gives each the others' access.

    Args:
        roles: (account, access) -> the member role.
        central: The spec's ``[central]``.
        planned: Where the warnings go (they hold nothing back).
    """
    grants: dict[str, dict[str, set[RoleKey]]] = defaultdict(lambda: defaultdict(set))
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
