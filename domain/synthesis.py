"""Access synthesis: reduce mapped IAM users' effective access to shared permission sets."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from domain.access import (
    AssignmentDefinition,
    KnownPermissionSet,
    PermissionSetDefinition,
    RequiredPolicy,
    SynthesisResult,
    same_boundary,
)
from domain.customer_policy_choice import Inlined, choose_customer_policies
from domain.fingerprinted_access import AccountAccess, FingerprintedAccess, Holder, PolicyRef
from domain.least_privilege_report import UsageTrim, usage_findings
from domain.permission_set_naming import (
    check_prefix,
    describe_access,
    name_stem,
    unique_names,
)
from domain.permission_set_quotas import (
    DEFAULT_MAX_PER_ACCOUNT,
    DEFAULT_MAX_PERMISSION_SETS,
    MAX_MANAGED_PER_ROLE,
    check_quotas,
)
from domain.policy_documents import DEFAULT_POLICY_VERSION, SID_PATTERN, statement_pairs
from domain.records import (
    AccountInventory,
    Finding,
    Group,
    GroupMapping,
    IdentityGroup,
    MatchStatus,
    User,
    UserMapping,
)
from domain.synthesis_findings import access_widened, boundary_conflict, no_access
from domain.usage import DEFAULT_WINDOW_DAYS, UsageRead

# ISO-8601 duration as Identity Center accepts it for SessionDuration (1 to 12 hours).
_DURATION_PATTERN = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?")
_SEVERITY_ORDER = {"blocking": 0, "error": 1, "warning": 2, "info": 3}


# -- Synthesis -----------------------------------------------------------------------------


def _check_session_duration(value: str) -> None:
    match = _DURATION_PATTERN.fullmatch(value)
    minutes = 0
    if match and any(match.groups()):
        minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0)
    if not 60 <= minutes <= 720:
        raise ValueError(f"session duration {value!r} is not an ISO-8601 duration of 1-12 hours")


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
    provisioned: dict[str, list[str]] | None = None,
    policy_inventories: list[AccountInventory] | None = None,
    boundary: dict[str, Any] | None = None,
    usage: UsageRead | None = None,
    least_privilege_mode: str = "report",
    window_days: int = DEFAULT_WINDOW_DAYS,
    now: datetime | None = None,
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
        provisioned: Fingerprint -> accounts earlier waves provisioned that set to: a
            customer-managed policy is referenced only if those accounts have it too.
        policy_inventories: Where customer-managed policies are compared (all waves').
        boundary: The spec's permissions boundary (``PermissionSets.boundary_reference()``),
            put on every set; None: a set keeps the boundary of the IAM user it comes from.
            A user whose own boundary is another policy is a user-scoped blocking finding
            (``boundary-conflict``): a set holds one boundary, and which of two is stricter
            can't be known from their names.
        usage: The latest usage read (``iamc usage``); None: least privilege is not looked at.
        least_privilege_mode: ``report`` (sets unchanged, granted / used / never used
            reported) or ``trim`` (a holder whose use is known keeps the services used).
        window_days: The spec's ``[least_privilege] window_days``.
        now: Plan time, which the usage read's age is measured against (default: now).

    Returns:
        The permission sets, assignments, required customer-managed policies and findings,
        and with ``usage`` the plan's least privilege section.

    Raises:
        ValueError: the session duration or the name prefix is invalid.
    """
    _check_session_duration(session_duration)
    check_prefix(name_prefix)
    holders, findings, users_by_key = _holders(
        inventories, user_mappings, group_mappings, identity_groups, boundary
    )
    findings.extend(usage_findings(usage, least_privilege_mode, window_days, now))
    trim = None if usage is None else UsageTrim(usage, least_privilege_mode, window_days)
    if trim is not None:
        holders = trim.apply(holders, *_usage_inputs(inventories, users_by_key))
    result = _assemble(holders, session_duration, name_prefix, findings, known, boundary)
    # Reference or inline each customer-managed policy, before the inline quotas are checked.
    _choose_references(result, holders, policy_inventories or inventories, provisioned)
    if trim is not None:
        result.least_privilege = trim.report(
            {d.fingerprint: d.name for d in result.permission_sets}
        )
    check_quotas(result, max_permission_sets, max_per_account, max_managed_policies)
    result.findings.sort(key=_finding_order)
    return result


def _holders(
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    group_mappings: list[GroupMapping],
    identity_groups: list[IdentityGroup],
    boundary: dict[str, Any] | None,
) -> tuple[list[Holder], list[Finding], dict[tuple[str, str], UserMapping]]:
    """Who receives which access in every readable account, the findings on the way, and the
    matched user mappings by (account, IAM user)."""
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
    holders: list[Holder] = []
    findings: list[Finding] = []
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        if inventory.error is None:
            account = AccountAccess(inventory)
            _AccountSynthesis(account, users_by_key, holders, findings, boundary).run(
                groups_by_key, idp_groups
            )
    return holders, findings, users_by_key


def _finding_order(f: Finding) -> tuple[int, str, str, str, str]:
    return (
        _SEVERITY_ORDER.get(f.severity, 9),
        f.kind,
        f.account_id or "",
        f.subject or "",
        f.message,
    )


def _usage_inputs(
    inventories: list[AccountInventory], users_by_key: dict[tuple[str, str], UserMapping]
) -> tuple[
    dict[str, dict[str, Any]], dict[tuple[str, str], list[str]], dict[tuple[str, str], datetime]
]:
    """What least privilege reads: account -> managed policy ARN -> document, (account, IAM
    group) -> its mapped members (whose use a group's set is trimmed by), and (account, IAM
    user) -> its latest sign-in or key use."""
    documents: dict[str, dict[str, Any]] = {}
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    active: dict[tuple[str, str], datetime] = {}
    for inventory in inventories:
        account_id = inventory.account.account_id
        documents[account_id] = {
            p.arn: p.document for p in inventory.managed_policies if p.document is not None
        }
        for user in inventory.users:
            if (account_id, user.name) in users_by_key:
                for group in user.groups:
                    members[(account_id, group)].append(user.name)
                dates = [user.password_last_used, *(k.last_used_date for k in user.access_keys)]
                known = [d if d.tzinfo else d.replace(tzinfo=UTC) for d in dates if d]
                if known:
                    active[(account_id, user.name)] = max(known)
    return documents, members, active


class _AccountSynthesis:
    """One account's holders and findings: the group route first, then each mapped user."""

    def __init__(
        self,
        account: AccountAccess,
        users_by_key: dict[tuple[str, str], UserMapping],
        holders: list[Holder],
        findings: list[Finding],
        boundary: dict[str, Any] | None = None,
    ):
        self.account = account
        self.boundary = boundary
        self.account_id = account.account_id
        self.holders = holders
        self.findings = findings
        inventory = account.inventory
        self.members: dict[str, list[User]] = defaultdict(list)
        for user in inventory.users:
            for name in user.groups:
                self.members[name].append(user)
        self.mapped = [
            (user, users_by_key[(self.account_id, user.name)])
            for user in sorted(inventory.users, key=lambda u: u.name)
            if (self.account_id, user.name) in users_by_key
        ]
        self.identity_of = {user.name: m.identity_user_id for user, m in self.mapped}
        self.routed: dict[str, set[str]] = {}  # IAM group name -> identity-group member ids

    def run(
        self,
        groups_by_key: dict[tuple[str, str], GroupMapping],
        idp_groups: dict[str, IdentityGroup],
    ) -> None:
        # Group route: IAM group G -> identity group, with G's own policies only.
        for group in sorted(self.account.inventory.groups, key=lambda g: g.name):
            mapping = groups_by_key.get((self.account_id, group.name))
            if mapping is not None:
                self._route_group(group, mapping, idp_groups.get(mapping.identity_group_id or ""))
        for user, mapping in self.mapped:
            self._assign_user(user, mapping)
        self._report_policies()

    def _route_group(
        self, group: Group, mapping: GroupMapping, idp_group: IdentityGroup | None
    ) -> None:
        account_id = self.account_id
        label = mapping.identity_group_name or (idp_group.display_name if idp_group else "")
        if idp_group is None:
            self.findings.append(
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
            return
        # A member whose boundary is the spec's loses nothing: the group's set carries it too.
        bounded = sorted(u.name for u in self.members[group.name] if self._own_boundary(u))
        if bounded:
            # A group assignment would give the members G's access without their boundary.
            self.findings.append(
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
            return
        access = self.account.group_access(group)
        if access is None or not access.grants_anything:
            return  # unresolvable (reported below) or nothing to grant
        idp_members = set(idp_group.member_ids)
        self.routed[group.name] = idp_members
        self.holders.append(
            Holder(
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
        mapped_members = {
            self.identity_of[u.name] for u in self.members[group.name] if u.name in self.identity_of
        }
        gaining = sorted(idp_members - mapped_members)
        if gaining:
            self.findings.append(access_widened(account_id, group.name, label, idp_group, gaining))

    def _own_boundary(self, user: User) -> str | None:
        """The user's boundary when the set it receives would not carry that same policy."""
        arn = user.permissions_boundary_arn
        if arn and self.boundary and same_boundary(arn, self.boundary, self.account_id):
            return None
        return arn

    def _assign_user(self, user: User, mapping: UserMapping) -> None:
        account_id = self.account_id
        own_boundary = self._own_boundary(user)
        if own_boundary and self.boundary:
            self.findings.append(
                boundary_conflict(account_id, user.name, own_boundary, self.boundary)
            )
            return
        identity = mapping.identity_user_id or ""
        routed = self.routed
        covered = {g for g in user.groups if g in routed and identity in routed[g]}
        for name in sorted(g for g in user.groups if g in routed and g not in covered):
            self.findings.append(
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
        groups = self.account.groups
        contributing = tuple(
            sorted(
                g
                for g in set(user.groups)
                if g in groups and (groups[g].attached_policies or groups[g].inline_policies)
            )
        )
        own = bool(user.attached_policies or user.inline_policies)
        residual = own or any(g not in covered for g in contributing)
        if not residual and not own_boundary:
            if not covered:
                self.findings.append(no_access(account_id, user.name))
            return  # the group assignments give everything the user had
        # One session must still do all it did: the per-user set carries the FULL access.
        # With a spec boundary every set carries it (a user's own is that one, or refused
        # above): the user's boundary is then no part of what is shared.
        access = self.account.access(
            user, self.account.inventory.groups, with_boundary=self.boundary is None
        )
        if access is None:
            return  # unresolvable: reported below
        if not access.grants_anything:
            self.findings.append(no_access(account_id, user.name))
            return
        self.holders.append(
            Holder(
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

    def _report_policies(self) -> None:
        account_id = self.account_id
        for arn, subjects in sorted(self.account.unresolved.items()):
            self.findings.append(
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
        for policy, subjects in sorted(self.account.old_versions.items()):
            self.findings.append(
                Finding(
                    severity="warning",
                    kind="policy-version-changed",
                    message=f"Inline policy {policy} in {account_id} has no 2012-10-17 Version "
                    "but contains '${': merged under 2012-10-17 that text becomes a policy "
                    "variable",
                    account_id=account_id,
                    subject=", ".join(sorted(subjects)),
                    details={"policy": policy, "used_by": sorted(subjects)},
                )
            )


# -- Assembly ----------------------------------------------------------------------------


def _sources(access: FingerprintedAccess, holders: list[Holder]) -> list[str]:
    found = {f"group {g}" for h in holders for g in h.groups}
    found |= {f"policy {r.name}" for r in access.aws_managed + access.customer_managed}
    found |= {f"inline {name}" for name in access.inline_names}
    if access.boundary:
        found.add(f"boundary {access.boundary.name}")
    return sorted(found)


def _inline_document(access: FingerprintedAccess) -> dict[str, Any] | None:
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


def _choose_references(
    result: SynthesisResult,
    holders: list[Holder],
    inventories: list[AccountInventory],
    provisioned: dict[str, list[str]] | None,
) -> None:
    by_name = {p.name: p for p in result.permission_sets}
    chosen = choose_customer_policies(result, holders, inventories, provisioned)
    for name, inlined in chosen.items():
        _inline_customer_policies(by_name[name], inlined)


def _inline_customer_policies(
    permission_set: PermissionSetDefinition, inlined: list[Inlined]
) -> None:
    """Merge the statements of customer-managed policies into the set's inline policy."""
    pairs = statement_pairs(permission_set.inline_policy or {})
    for item in inlined:
        pairs.extend(statement_pairs(item.document))
    statements: dict[str, dict[str, Any]] = {}
    for key, shown in pairs:
        statements.setdefault(key, shown)
    ordered = {key: statements[key] for key in sorted(statements)}
    merged = FingerprintedAccess([], [], ordered, None, [])
    permission_set.inline_policy = _inline_document(merged)
    inlined_sources = {f"inlined {i.policy}" for i in inlined}
    permission_set.sources = sorted({*permission_set.sources, *inlined_sources})


def _boundary(ref: PolicyRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    if ref.aws_managed:
        return {"managed_policy_arn": ref.arn}
    return {"customer_managed_policy_reference": {"name": ref.name, "path": ref.path}}


def _assemble(
    holders: list[Holder],
    session_duration: str,
    prefix: str,
    findings: list[Finding],
    known: dict[str, KnownPermissionSet] | None = None,
    boundary: dict[str, Any] | None = None,
) -> SynthesisResult:
    by_fingerprint: dict[str, list[Holder]] = defaultdict(list)
    for holder in holders:
        by_fingerprint[holder.access.fingerprint].append(holder)
    for group in by_fingerprint.values():
        group.sort(key=Holder.sort_key)

    known = known or {}
    stems = {fp: name_stem(group[0].access) for fp, group in by_fingerprint.items()}
    taken = {k.name: fp for fp, k in known.items()}
    names = unique_names({fp: st for fp, st in stems.items() if fp not in known}, prefix, taken)
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
                description=(fp in known and known[fp].description) or describe_access(access),
                fingerprint=fp,
                session_duration=(fp in known and known[fp].session_duration) or session_duration,
                inline_policy=inline,
                aws_managed_policy_arns=[r.arn for r in access.aws_managed],
                customer_managed_policies=[
                    {"name": r.name, "path": r.path} for r in access.customer_managed
                ],
                # The spec's boundary is part of the definition, not of the fingerprint:
                # changing it updates the organization's sets instead of making new ones.
                permissions_boundary=boundary or _boundary(access.boundary),
                sources=sources,
            )
        )
    permission_sets.sort(key=lambda p: p.name)

    reasons: dict[tuple[str, str, str, str], tuple[str, set[str]]] = {}
    for holder in holders:
        name = names[holder.access.fingerprint]
        key = (holder.account_id, name, holder.principal_type, holder.principal_id)
        # Two IAM users of one account may map to one identity: one assignment, both reasons.
        reasons.setdefault(key, (holder.principal_name, set()))[1].add(holder.reason)
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
        required_customer_policies=_required_policies(holders, boundary),
        findings=findings,
    )


def _required_policies(
    holders: list[Holder], boundary: dict[str, Any] | None
) -> list[RequiredPolicy]:
    """Customer-managed policies each account needs: the sets' references and boundaries.

    Identity Center needs a referenced policy to exist, same name and path, in every account
    the set is provisioned to (userguide, customer managed policies); a customer-managed
    boundary is referenced the same way.
    """
    required: set[RequiredPolicy] = set()
    spec_reference = (boundary or {}).get("customer_managed_policy_reference")
    for holder in holders:
        customer = list(holder.access.customer_managed)
        if holder.access.boundary and not holder.access.boundary.aws_managed:
            customer.append(holder.access.boundary)
        required.update(RequiredPolicy(holder.account_id, r.name, r.path) for r in customer)
        if spec_reference:
            path = spec_reference.get("path") or "/"
            required.add(RequiredPolicy(holder.account_id, spec_reference["name"], path))
    return sorted(required)
