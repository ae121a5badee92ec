"""Access synthesis: reduce mapped IAM users' effective access to shared permission sets."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from domain.access import (
    AssignmentDefinition,
    KnownPermissionSet,
    PermissionSetDefinition,
    RequiredPolicy,
    SynthesisResult,
    effective_access,
)
from domain.permission_set_quotas import (
    DEFAULT_MAX_PER_ACCOUNT,
    DEFAULT_MAX_PERMISSION_SETS,
    MAX_DESCRIPTION_LENGTH,
    MAX_MANAGED_PER_ROLE,
    MAX_NAME_LENGTH,
    check_quotas,
)
from domain.policy_documents import (
    DEFAULT_POLICY_VERSION,
    SID_PATTERN,
    canonical_json,
    policy_fingerprint,
    sha256_hex,
    statement_pairs,
)
from domain.records import (
    AccountInventory,
    Finding,
    Group,
    GroupMapping,
    IdentityGroup,
    InlinePolicy,
    ManagedPolicy,
    MatchStatus,
    User,
    UserMapping,
)

# Identity Center names: [\w+=,.@-]{1,32}. Java's \w is ASCII-only, so say so explicitly.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+=,.@-]{1,32}")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_+=,.@-]+")
# ISO-8601 duration as Identity Center accepts it for SessionDuration (1 to 12 hours).
_DURATION_PATTERN = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?")
_SEVERITY_ORDER = {"blocking": 0, "error": 1, "warning": 2, "info": 3}
_HASH_DIGITS = 8
# Leaves a readable stem beside "-" and the hash, and room for more digits on a clash.
MAX_PREFIX_LENGTH = 12


# -- Access --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PolicyRef:
    """A managed policy as the fingerprint sees it: ARN for AWS's, name+path+document else."""

    arn: str
    name: str
    path: str
    aws_managed: bool
    document_hash: str | None = None

    def identity(self) -> Any:
        if self.aws_managed:
            return {"arn": self.arn}
        return {"name": self.name, "path": self.path, "document": self.document_hash}


@dataclass
class _Access:
    aws_managed: list[_PolicyRef]
    customer_managed: list[_PolicyRef]
    statements: dict[str, dict[str, Any]]  # fingerprint key -> shown statement
    boundary: _PolicyRef | None
    inline_names: list[str]
    fingerprint: str = ""

    @property
    def grants_anything(self) -> bool:
        return bool(self.aws_managed or self.customer_managed or self.statements)


@dataclass
class _Holder:
    """Who receives an access in one account: an identity user or an identity group."""

    account_id: str
    principal_type: str
    principal_id: str
    principal_name: str
    subject: str  # the IAM user or group it comes from
    access: _Access
    groups: tuple[str, ...]  # IAM groups whose policies are part of the access
    own_policies: bool  # the IAM user's own attached or inline policies are part of it

    @property
    def reason(self) -> str:
        return f"{'user' if self.principal_type == 'USER' else 'group'} {self.subject}"

    def sort_key(self) -> tuple[str, str, str]:
        return (self.account_id, self.principal_type, self.subject)


def _is_aws_managed(arn: str) -> bool:
    # Also covers other partitions (arn:aws-us-gov:iam::aws:policy/...).
    return ":iam::aws:policy/" in arn


class _Account:
    """One account's policies, resolved and fingerprinted once each however many users share."""

    def __init__(self, inventory: AccountInventory):
        self.account_id = inventory.account.account_id
        self.inventory = inventory
        self.policies: dict[str, ManagedPolicy] = {p.arn: p for p in inventory.managed_policies}
        self.groups: dict[str, Group] = {g.name: g for g in inventory.groups}
        self._refs: dict[str, _PolicyRef | None] = {}
        # (source, policy name) -> (statement pairs, whether merging changes its meaning)
        self._inline: dict[tuple[str, str], tuple[list[tuple[str, dict[str, Any]]], bool]] = {}
        self.unresolved: dict[str, set[str]] = defaultdict(set)  # arn -> subjects needing it
        self.old_versions: dict[str, set[str]] = defaultdict(set)  # policy label -> subjects

    def ref(self, arn: str, subject: str) -> _PolicyRef | None:
        if arn not in self._refs:
            self._refs[arn] = self._resolve(arn)
        resolved = self._refs[arn]
        if resolved is None:
            self.unresolved[arn].add(subject)
        return resolved

    def _resolve(self, arn: str) -> _PolicyRef | None:
        record = self.policies.get(arn)
        if _is_aws_managed(arn):
            # AWS-managed policies are the same document in every account: the ARN is enough.
            name = record.name if record else arn.rsplit("/", 1)[-1]
            path = record.path if record else "/"
            return _PolicyRef(arn=arn, name=name, path=path, aws_managed=True)
        if record is None or record.document is None:
            return None
        return _PolicyRef(
            arn=arn,
            name=record.name,
            path=record.path or "/",
            aws_managed=False,
            document_hash=policy_fingerprint(record.document),
        )

    def statements(
        self, source: str, policy: InlinePolicy, subject: str
    ) -> list[tuple[str, dict[str, Any]]]:
        key = (source, policy.name)
        if key not in self._inline:
            version = policy.document.get("Version")
            # Without Version (or with 2008-10-17) "${...}" is literal text; merged under
            # 2012-10-17 it becomes a policy variable (IAM JSON policy elements, "Version").
            changes = version != DEFAULT_POLICY_VERSION and "${" in canonical_json(policy.document)
            self._inline[key] = (statement_pairs(policy.document), changes)
        pairs, changes = self._inline[key]
        if changes:
            self.old_versions[f"{source}/{policy.name}"].add(subject)
        return pairs

    def access(self, user: User, groups: list[Group], *, with_boundary: bool) -> _Access | None:
        """The access a user gets from its own policies and ``groups``; None if unresolvable."""
        found = effective_access(user, groups)
        refs = [self.ref(arn, f"user {user.name}") for arn in found.managed_policy_arns]
        boundary = None
        if with_boundary and found.boundary_arn:
            boundary = self.ref(found.boundary_arn, f"user {user.name}")
            if boundary is None:
                return None
        if any(ref is None for ref in refs):
            return None
        pairs: list[tuple[str, dict[str, Any]]] = []
        names = []
        for source, policy in found.inline_policies:
            label = f"user:{user.name}" if source == "user" else source
            pairs.extend(self.statements(label, policy, f"user {user.name}"))
            names.append(policy.name)
        return _build_access([r for r in refs if r is not None], pairs, boundary, names)

    def group_access(self, group: Group) -> _Access | None:
        refs = [self.ref(p.arn, f"group {group.name}") for p in group.attached_policies]
        if any(ref is None for ref in refs):
            return None
        pairs = [
            pair
            for policy in group.inline_policies
            for pair in self.statements(f"group:{group.name}", policy, f"group {group.name}")
        ]
        names = [p.name for p in group.inline_policies]
        return _build_access([r for r in refs if r is not None], pairs, None, names)


def _build_access(
    refs: list[_PolicyRef],
    pairs: list[tuple[str, dict[str, Any]]],
    boundary: _PolicyRef | None,
    inline_names: list[str],
) -> _Access:
    unique = {ref.arn: ref for ref in refs}.values()
    aws = sorted((r for r in unique if r.aws_managed), key=lambda r: r.arn)
    customer = sorted((r for r in unique if not r.aws_managed), key=lambda r: (r.path, r.name))
    statements: dict[str, dict[str, Any]] = {}
    for key, shown in pairs:
        # Same statement from two policies: keep the smallest shown form (order-independent).
        if key not in statements or canonical_json(shown) < canonical_json(statements[key]):
            statements[key] = shown
    access = _Access(
        aws_managed=aws,
        customer_managed=customer,
        statements={key: statements[key] for key in sorted(statements)},
        boundary=boundary,
        inline_names=sorted(set(inline_names)),
    )
    access.fingerprint = sha256_hex(
        canonical_json(
            {
                "aws_managed": [r.arn for r in aws],
                "customer_managed": [r.identity() for r in customer],
                "inline": list(access.statements),
                "boundary": boundary.identity() if boundary else None,
            }
        )
    )
    return access


# -- Synthesis -----------------------------------------------------------------------------


def _check_session_duration(value: str) -> None:
    match = _DURATION_PATTERN.fullmatch(value)
    minutes = 0
    if match and any(match.groups()):
        minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    if not 60 <= minutes <= 720:
        raise ValueError(f"session duration {value!r} is not an ISO-8601 duration of 1-12 hours")


def _check_prefix(prefix: str) -> None:
    if prefix and (not NAME_PATTERN.fullmatch(prefix) or len(prefix) > MAX_PREFIX_LENGTH):
        raise ValueError(
            f"name prefix {prefix!r} must be at most {MAX_PREFIX_LENGTH} "
            "characters of [A-Za-z0-9_+=,.@-]"
        )


def synthesize(
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    group_mappings: list[GroupMapping],
    identity_groups: list[IdentityGroup],
    *,
    session_duration: str = "PT8H",
    name_prefix: str = "",
    max_permission_sets: int = DEFAULT_MAX_PERMISSION_SETS,
    max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    max_managed_policies: int = MAX_MANAGED_PER_ROLE,
    known: dict[str, KnownPermissionSet] | None = None,
) -> SynthesisResult:
    """Permission sets and assignments that reproduce the access of every matched IAM user.

    Only users with a MATCHED user mapping are synthesised. An IAM group with a MATCHED group
    mapping gets its own permission set assigned to the identity group, unless a member has a
    permissions boundary; its members then need a per-user assignment only for access the group
    route does not cover. Quota violations are blocking findings, never exceptions.

    Args:
        inventories: One inventory per account; those with ``error`` set are skipped.
        user_mappings: IAM user to identity user; only MATCHED ones are used.
        group_mappings: IAM group to identity group; only MATCHED ones are used.
        identity_groups: The identity store's groups with their member ids.
        session_duration: ISO-8601 session duration of every permission set (1-12 hours).
        name_prefix: Prepended to every permission set name.
        max_permission_sets: Permission sets allowed in the Identity Center instance.
        max_per_account: Permission sets allowed to be provisioned to one account.
        max_managed_policies: Managed policies allowed per role in the member accounts (raise it
            only where the IAM quota was raised in every account).
        known: The organization's permission sets by fingerprint (earlier waves): an access
            one of them has keeps that set's name and inline document.

    Returns:
        The permission sets, assignments, required customer-managed policies and findings.

    Raises:
        ValueError: the session duration or the name prefix is invalid.
    """
    _check_session_duration(session_duration)
    _check_prefix(name_prefix)
    users_by_key = {
        (m.account_id, m.iam_user): m
        for m in user_mappings
        if m.status == MatchStatus.MATCHED and m.identity_user_id
    }
    groups_by_key = {
        (m.account_id, m.iam_group): m
        for m in group_mappings
        if m.status == MatchStatus.MATCHED and m.identity_group_id
    }
    idp_groups = {g.group_id: g for g in identity_groups}
    holders: list[_Holder] = []
    findings: list[Finding] = []
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        if inventory.error is None:
            _synthesize_account(
                _Account(inventory), users_by_key, groups_by_key, idp_groups, holders, findings
            )
    result = _assemble(holders, session_duration, name_prefix, findings, known)
    check_quotas(result, holders, max_permission_sets, max_per_account, max_managed_policies)
    result.findings.sort(
        key=lambda f: (
            _SEVERITY_ORDER.get(f.severity, 9),
            f.kind,
            f.account_id or "",
            f.subject or "",
            f.message,
        )
    )
    return result


def _synthesize_account(
    account: _Account,
    users_by_key: dict[tuple[str, str], UserMapping],
    groups_by_key: dict[tuple[str, str], GroupMapping],
    idp_groups: dict[str, IdentityGroup],
    holders: list[_Holder],
    findings: list[Finding],
) -> None:
    account_id = account.account_id
    inventory = account.inventory
    members: dict[str, list[User]] = defaultdict(list)
    for user in inventory.users:
        for name in user.groups:
            members[name].append(user)
    mapped = [
        (user, users_by_key[(account_id, user.name)])
        for user in sorted(inventory.users, key=lambda u: u.name)
        if (account_id, user.name) in users_by_key
    ]
    identity_of = {user.name: m.identity_user_id for user, m in mapped}

    # Group route: IAM group G -> identity group, with G's own policies only.
    routed: dict[str, set[str]] = {}  # IAM group name -> identity-group member ids
    for group in sorted(inventory.groups, key=lambda g: g.name):
        mapping = groups_by_key.get((account_id, group.name))
        if mapping is None:
            continue
        idp_group = idp_groups.get(mapping.identity_group_id or "")
        label = mapping.identity_group_name or (idp_group.display_name if idp_group else "")
        if idp_group is None:
            findings.append(
                Finding(
                    severity="warning",
                    kind="identity-group-unknown",
                    message=f"IAM group {group.name} in {account_id} maps to identity group "
                    f"{mapping.identity_group_id}, which the identity store did not list: "
                    "its members get per-user assignments instead",
                    account_id=account_id,
                    subject=group.name,
                    details={"identity_group_id": mapping.identity_group_id},
                )
            )
            continue
        bounded = sorted(u.name for u in members[group.name] if u.permissions_boundary_arn)
        if bounded:
            # A group assignment would give the members G's access without their boundary.
            findings.append(
                Finding(
                    severity="info",
                    kind="group-route-boundary",
                    message=f"IAM group {group.name} in {account_id} is assigned per user, not "
                    f"to identity group {label}: member(s) {', '.join(bounded)} have a "
                    "permissions boundary that a group assignment would bypass",
                    account_id=account_id,
                    subject=group.name,
                    details={"members_with_boundary": bounded},
                )
            )
            continue
        access = account.group_access(group)
        if access is None or not access.grants_anything:
            continue  # unresolvable (reported below) or nothing to grant
        idp_members = set(idp_group.member_ids)
        routed[group.name] = idp_members
        holders.append(
            _Holder(
                account_id=account_id,
                principal_type="GROUP",
                principal_id=idp_group.group_id,
                principal_name=label or idp_group.group_id,
                subject=group.name,
                access=access,
                groups=(group.name,),
                own_policies=False,
            )
        )
        mapped_members = {identity_of[u.name] for u in members[group.name] if u.name in identity_of}
        gaining = sorted(idp_members - mapped_members)
        if gaining:
            findings.append(
                Finding(
                    severity="warning",
                    kind="access-widened",
                    message=f"Assigning IAM group {group.name}'s access in {account_id} to "
                    f"identity group {label or idp_group.group_id} widens access: "
                    f"{len(gaining)} identity(ies) gain it without being mapped members of "
                    f"{group.name} in that account",
                    account_id=account_id,
                    subject=group.name,
                    details={
                        "identity_group_id": idp_group.group_id,
                        "gaining_count": len(gaining),
                        "gaining_identity_ids": gaining,
                    },
                )
            )

    for user, mapping in mapped:
        identity = mapping.identity_user_id or ""
        covered = {g for g in user.groups if g in routed and identity in routed[g]}
        for name in sorted(g for g in user.groups if g in routed and g not in covered):
            findings.append(
                Finding(
                    severity="info",
                    kind="group-member-not-in-idp-group",
                    message=f"IAM user {user.name} is in group {name} in {account_id} but its "
                    "identity is not in the mapped identity group: assigned per user",
                    account_id=account_id,
                    subject=user.name,
                    details={"iam_group": name, "identity_user_id": identity},
                )
            )
        contributing = tuple(
            sorted(
                g
                for g in set(user.groups)
                if g in account.groups
                and (account.groups[g].attached_policies or account.groups[g].inline_policies)
            )
        )
        own = bool(user.attached_policies or user.inline_policies)
        residual = own or any(g not in covered for g in contributing)
        if not residual and not user.permissions_boundary_arn:
            if not covered:
                findings.append(_no_access(account_id, user.name))
            continue  # the group assignments give everything the user had
        # One session must still do all it did: the per-user set carries the FULL access.
        access = account.access(user, inventory.groups, with_boundary=True)
        if access is None:
            continue  # unresolvable: reported below
        if not access.grants_anything:
            findings.append(_no_access(account_id, user.name))
            continue
        holders.append(
            _Holder(
                account_id=account_id,
                principal_type="USER",
                principal_id=identity,
                principal_name=mapping.identity_user_name or identity,
                subject=user.name,
                access=access,
                groups=contributing,
                own_policies=own,
            )
        )

    for arn, subjects in sorted(account.unresolved.items()):
        findings.append(
            Finding(
                severity="blocking",
                kind="policy-document-missing",
                message=f"Managed policy {arn} in {account_id} has no document in the "
                f"inventory, so the access of {', '.join(sorted(subjects))} can't be "
                "fingerprinted safely: re-run the inventory",
                account_id=account_id,
                subject=", ".join(sorted(subjects)),
                details={"policy_arn": arn, "needed_by": sorted(subjects)},
            )
        )
    for policy, subjects in sorted(account.old_versions.items()):
        findings.append(
            Finding(
                severity="warning",
                kind="policy-version-changed",
                message=f"Inline policy {policy} in {account_id} has no 2012-10-17 Version but "
                "contains '${': merged under 2012-10-17 that text becomes a policy variable",
                account_id=account_id,
                subject=", ".join(sorted(subjects)),
                details={"policy": policy, "used_by": sorted(subjects)},
            )
        )


def _no_access(account_id: str, user_name: str) -> Finding:
    return Finding(
        severity="info",
        kind="no-effective-access",
        message=f"IAM user {user_name} in {account_id} has no policies: no assignment needed",
        account_id=account_id,
        subject=user_name,
    )


# -- Naming and assembly -------------------------------------------------------------------


def _stem(access: _Access) -> tuple[str, bool]:
    """The readable part of a name, and whether it may stand alone (without the hash).

    A function of the access alone, never of who holds it: a later wave computes the same
    name for the same access whatever users, groups or accounts it comes from.
    """
    if (
        len(access.aws_managed) == 1
        and not access.customer_managed
        and not access.statements
        and access.boundary is None
    ):
        return access.aws_managed[0].name, True
    managed = access.aws_managed + access.customer_managed
    if managed:
        return "+".join(r.name for r in managed), False
    return "inline", False


def _name(prefix: str, stem: str, fingerprint: str, digits: int, plain: bool) -> str:
    clean = _NAME_UNSAFE.sub("-", stem).strip("-") or "access"
    if plain and len(prefix) + len(clean) <= MAX_NAME_LENGTH:
        return prefix + clean
    room = MAX_NAME_LENGTH - len(prefix) - digits - 1
    return f"{prefix}{clean[:room].rstrip('-') or 'ps'}-{fingerprint[:digits]}"


def _description(access: _Access) -> str:
    """What the set grants, from its access alone: the same in every wave and re-plan.

    No counts of users or accounts (they differ per wave; the plan says whom a set serves).
    """
    parts = []
    if access.aws_managed:
        parts.append("AWS-managed " + ", ".join(r.name for r in access.aws_managed))
    if access.customer_managed:
        names = ", ".join(r.path + r.name for r in access.customer_managed)
        parts.append("customer-managed " + names)
    if access.statements:
        count = len(access.statements)
        parts.append(f"{count} inline statement{'s' if count != 1 else ''}")
    if access.boundary:
        parts.append(f"boundary {access.boundary.name}")
    tail = f"; access {access.fingerprint[:12]} (iamc)"
    text = "IAM access: " + "; ".join(parts or ["none"])
    if len(text) + len(tail) > MAX_DESCRIPTION_LENGTH:
        text = text[: MAX_DESCRIPTION_LENGTH - len(tail) - 3] + "..."
    return text + tail


def _sources(access: _Access, holders: list[_Holder]) -> list[str]:
    found = {f"group {g}" for h in holders for g in h.groups}
    found |= {f"policy {r.name}" for r in access.aws_managed + access.customer_managed}
    found |= {f"inline {name}" for name in access.inline_names}
    if access.boundary:
        found.add(f"boundary {access.boundary.name}")
    return sorted(found)


def _inline_document(access: _Access) -> dict[str, Any] | None:
    if not access.statements:
        return None
    statements = [dict(s) for s in access.statements.values()]
    # Sids must be unique in a policy and ASCII letters/digits (IAM JSON policy elements,
    # "Sid"): drop invalid ones, number repeats.
    used: set[str] = set()
    for statement in statements:
        sid = statement.pop("Sid", None)
        if not isinstance(sid, str) or not SID_PATTERN.fullmatch(sid):
            continue
        candidate, n = sid, 1
        while candidate in used:
            n += 1
            candidate = f"{sid}{n}"
        used.add(candidate)
        statement["Sid"] = candidate
    return {
        "Version": DEFAULT_POLICY_VERSION,
        "Statement": [{k: s[k] for k in sorted(s)} for s in statements],
    }


def _boundary(ref: _PolicyRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    if ref.aws_managed:
        return {"managed_policy_arn": ref.arn}
    return {"customer_managed_policy_reference": {"name": ref.name, "path": ref.path}}


def _assemble(
    holders: list[_Holder],
    session_duration: str,
    prefix: str,
    findings: list[Finding],
    known: dict[str, KnownPermissionSet] | None = None,
) -> SynthesisResult:
    by_fingerprint: dict[str, list[_Holder]] = defaultdict(list)
    for holder in holders:
        by_fingerprint[holder.access.fingerprint].append(holder)
    for group in by_fingerprint.values():
        group.sort(key=_Holder.sort_key)

    known = known or {}
    stems = {fp: _stem(group[0].access) for fp, group in by_fingerprint.items()}
    taken = {k.name: fp for fp, k in known.items()}
    names = _unique_names({fp: st for fp, st in stems.items() if fp not in known}, prefix, taken)
    names.update({fp: known[fp].name for fp in by_fingerprint if fp in known})

    permission_sets = []
    for fp, group in by_fingerprint.items():
        access = group[0].access  # the first holder in sorted order: input-order independent
        sources = _sources(access, group)
        # A set the organization has for this access keeps its document: the statements are
        # the same (same fingerprint), only Sids or their shown form may differ per holder.
        inline = known[fp].inline_policy if fp in known else _inline_document(access)
        permission_sets.append(
            PermissionSetDefinition(
                name=names[fp],
                description=(fp in known and known[fp].description) or _description(access),
                fingerprint=fp,
                session_duration=(fp in known and known[fp].session_duration) or session_duration,
                inline_policy=inline,
                aws_managed_policy_arns=[r.arn for r in access.aws_managed],
                customer_managed_policies=[
                    {"name": r.name, "path": r.path} for r in access.customer_managed
                ],
                permissions_boundary=_boundary(access.boundary),
                sources=sources,
            )
        )
    permission_sets.sort(key=lambda p: p.name)

    reasons: dict[tuple[str, str, str, str], tuple[str, set[str]]] = {}
    required: set[RequiredPolicy] = set()
    for holder in holders:
        name = names[holder.access.fingerprint]
        key = (holder.account_id, name, holder.principal_type, holder.principal_id)
        # Two IAM users of one account may map to one identity: one assignment, both reasons.
        reasons.setdefault(key, (holder.principal_name, set()))[1].add(holder.reason)
        customer = list(holder.access.customer_managed)
        if holder.access.boundary and not holder.access.boundary.aws_managed:
            customer.append(holder.access.boundary)
        # Identity Center needs the referenced policy to exist, same name and path, in every
        # account the set is provisioned to (userguide, customer managed policies).
        required.update(RequiredPolicy(holder.account_id, r.name, r.path) for r in customer)
    assignments = [
        AssignmentDefinition(
            account_id=account_id,
            permission_set_name=name,
            principal_type=principal_type,
            principal_id=principal_id,
            principal_name=principal_name,
            reason="; ".join(sorted(why)),
        )
        for (account_id, name, principal_type, principal_id), (principal_name, why) in sorted(
            reasons.items()
        )
    ]
    return SynthesisResult(
        permission_sets=permission_sets,
        assignments=assignments,
        required_customer_policies=sorted(required),
        findings=findings,
    )


def _unique_names(
    stems: dict[str, tuple[str, bool]], prefix: str, taken: dict[str, str] | None = None
) -> dict[str, str]:
    """Names per fingerprint; where two collide, both get more hash digits until they don't.

    ``taken``: names the organization already uses (name -> fingerprint); a new access never
    takes one of them.
    """
    taken = taken or {}
    digits = dict.fromkeys(stems, _HASH_DIGITS)
    plain = {fp: stem[1] for fp, stem in stems.items()}
    while True:
        names = {fp: _name(prefix, stems[fp][0], fp, digits[fp], plain[fp]) for fp in stems}
        seen: dict[str, list[str]] = defaultdict(list)
        for name, fp in taken.items():
            seen[name].append(fp)
        for fp, name in names.items():
            if fp not in seen[name]:
                seen[name].append(fp)
        clashes = [[fp for fp in fps if fp in stems] for fps in seen.values() if len(fps) > 1]
        if not clashes:
            return names
        widest = MAX_NAME_LENGTH - len(prefix) - 2  # one stem character, "-", the digits
        for fps in clashes:
            if all(digits[fp] >= widest and not plain[fp] for fp in fps):
                # 18+ equal leading hex digits of distinct sha256 digests: not a real case.
                raise RuntimeError(f"permission set name clash: {sorted(names[f] for f in fps)}")
            for fp in fps:
                plain[fp] = False
                digits[fp] = min(digits[fp] + 4, widest)
