"""The synthesized access as one plan provisions it: permission sets, their provisioning and
the account assignments, with what blocking findings hold back (the provision stage's actions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from domain.customer_policy_choice import policy_references
from domain.plan import PlanAction, Stage, flat_fields, sha256_of
from domain.records import AccountInventory, Finding, GroupMapping, MatchStatus, UserMapping
from domain.waves import OrgPermissionSet, definition_changes

_ByUser = dict[tuple[str, str], list[str]]  # (account id, user name) -> ...


@dataclass
class AccessPlan:
    """The synthesized access as this plan provisions it (the provision stage's actions).

    Attributes:
        findings: Synthesis's findings and the plan's own, sorted.
        actions: Create/update each permission set, provision it, create each assignment.
        permission_sets: The kept sets' definitions; ``assignments``: the kept assignments.
        required_customer_policies: Customer-managed policies the kept sets need, per account.
        assignment_ids: ``(account id, user)`` -> the assignment actions that give it access.
        permission_sets_of_user: ``(account id, user)`` -> the sets it receives.
        blocked: ``(account id, user)`` -> why a blocking finding holds its access back.
    """

    findings: list[Finding]
    actions: list[PlanAction]
    permission_sets: list[dict[str, Any]]
    assignments: list[dict[str, Any]]
    required_customer_policies: list[dict[str, str]]
    assignment_ids: dict[tuple[str, str], list[str]]
    permission_sets_of_user: dict[tuple[str, str], list[str]]
    blocked: dict[tuple[str, str], str]


def _users_blocked(
    findings: list[Finding], group_members: dict[tuple[str, str], list[str]]
) -> dict[tuple[str, str], str]:
    """(account, user) -> reason, for blocking findings about users or their groups.

    Synthesis names who holds a permission set as "user NAME" or "group NAME"; a group's
    members are blocked with it, since their access could not be provisioned either.
    """
    blocked: dict[tuple[str, str], str] = {}
    for finding in findings:
        if finding.severity != "blocking" or not finding.account_id:
            continue
        holders = [
            *(finding.details.get("holders") or []),
            *(finding.details.get("needed_by") or []),
        ]
        if finding.subject:
            # Synthesis joins several holders into one subject: "user a, group b".
            holders.extend(finding.subject.split(", "))
        for holder in holders:
            kind, _, name = str(holder).partition(" ")
            if kind == "user":
                names = [name]
            elif kind == "group":
                names = group_members.get((finding.account_id, name), [])
            else:
                continue
            for user_name in names:
                blocked.setdefault(
                    (finding.account_id, user_name), f"{finding.kind}: {finding.message}"
                )
    return blocked


@dataclass
class _Who:
    """Who an assignment gives access to: indexes, so a 10,000-user plan stays linear."""

    group_members: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    users_of_identity: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    groups_of_identity_group: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def covered_users(self, assignment: Any) -> list[str]:
        """The IAM users an assignment gives access to: the user, or the group's members."""
        key = (assignment.account_id, assignment.principal_id)
        if assignment.principal_type == "USER":
            return self.users_of_identity.get(key, [])
        return [
            member
            for iam_group in self.groups_of_identity_group.get(key, [])
            for member in self.group_members.get((assignment.account_id, iam_group), [])
        ]


def _who(
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    group_mappings: list[GroupMapping],
) -> _Who:
    group_members: dict[tuple[str, str], list[str]] = {}
    for inventory in inventories:
        for user in inventory.users:
            for group in user.groups:
                group_members.setdefault((inventory.account.account_id, group), []).append(
                    user.name
                )

    # Who an assignment gives access to: indexes, so a 10,000-user plan stays linear.
    users_of_identity: dict[tuple[str, str], list[str]] = {}
    for mapping in user_mappings:
        if mapping.status == MatchStatus.MATCHED and mapping.identity_user_id:
            key = (mapping.account_id, mapping.identity_user_id)
            users_of_identity.setdefault(key, []).append(mapping.iam_user)
    groups_of_identity_group: dict[tuple[str, str], list[str]] = {}
    for group_mapping in group_mappings:
        if group_mapping.status == MatchStatus.MATCHED and group_mapping.identity_group_id:
            key = (group_mapping.account_id, group_mapping.identity_group_id)
            groups_of_identity_group.setdefault(key, []).append(group_mapping.iam_group)
    return _Who(group_members, users_of_identity, groups_of_identity_group)


def _kept_assignments(
    findings: list[Finding],
    synthesis: Any,
    permission_sets: dict[str, Any],
    who: _Who,
    blocked: dict[tuple[str, str], str],
) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """The assignments and sets planned now, those left out, and the sets still used."""
    # A blocked user's access is not provisioned: leave out the assignments that serve only
    # blocked users (or hand out a permission set a blocking finding names in that account),
    # and the permission sets no remaining assignment uses.
    blocked_sets = {
        (f.account_id, f.details["permission_set"])
        for f in findings
        if f.severity == "blocking" and f.account_id and f.details.get("permission_set")
    }
    kept_assignments, dropped_assignments = [], []
    for assignment in synthesis.assignments:
        covered = who.covered_users(assignment)
        if (assignment.account_id, assignment.permission_set_name) in blocked_sets or (
            covered and all((assignment.account_id, u) in blocked for u in covered)
        ):
            dropped_assignments.append(assignment)
        else:
            kept_assignments.append(assignment)
    used_sets = {a.permission_set_name for a in kept_assignments}
    dropped_sets = sorted(name for name in permission_sets if name not in used_sets)
    if dropped_assignments:
        permission_sets = {n: ps for n, ps in permission_sets.items() if n in used_sets}
        findings.append(
            Finding(
                severity="info",
                kind="blocked-access-left-out",
                message=f"{len(dropped_assignments)} account assignment(s) and "
                f"{len(dropped_sets)} permission set(s) of users with blocking errors are left "
                "out of this plan: they are planned once the errors are fixed",
                details={
                    "assignments": len(dropped_assignments),
                    "permission_sets": dropped_sets,
                },
            )
        )
    return kept_assignments, dropped_assignments, permission_sets


def _set_actions(
    permission_sets: dict[str, Any], organization: dict[str, OrgPermissionSet] | None
) -> tuple[
    list[PlanAction],
    list[dict[str, Any]],
    dict[str, str],
    dict[str, OrgPermissionSet],
    dict[str, str],
]:
    """Create each set, or update one the organization has with another definition."""
    actions: list[PlanAction] = []
    ps_dicts = []
    set_action: dict[str, str] = {}  # name -> the action that creates or updates it
    updated: dict[str, OrgPermissionSet] = {}
    # Each set's definition is hashed once, not once per account it is provisioned to.
    definition_hash: dict[str, str] = {}
    for name in sorted(permission_sets):
        ps = permission_sets[name]
        definition = asdict(ps)
        ps_dicts.append(definition)
        definition_hash[name] = sha256_of(definition)
        known = (organization or {}).get(ps.fingerprint)
        changes = (
            definition_changes(definition, known.definition)
            if known is not None and known.ours and known.name == name
            else []
        )
        if changes:
            assert known is not None
            updated[name] = known
            set_action[name] = f"provision:update-permission-set:{name}"
            actions.append(
                PlanAction(
                    id=set_action[name],
                    stage=Stage.PROVISION,
                    kind="update-permission-set",
                    account_id=None,
                    target=name,
                    target_fingerprint=definition_hash[name],
                    params={
                        "definition": definition,
                        "previous": known.definition,
                        "changes": changes,
                        "created_by": known.created_by,
                        "reprovision_accounts": list(known.accounts),
                    },
                )
            )
            continue
        set_action[name] = f"provision:create-permission-set:{name}"
        actions.append(
            PlanAction(
                id=set_action[name],
                stage=Stage.PROVISION,
                kind="create-permission-set",
                account_id=None,
                target=name,
                target_fingerprint=definition_hash[name],
                params={"definition": definition},
            )
        )
    return actions, ps_dicts, set_action, updated, definition_hash


def _with_hash(reference: dict[str, str], document_hash: str | None) -> dict[str, str]:
    return {**reference, "document_hash": document_hash} if document_hash else reference


def _required_policies(
    permission_sets: dict[str, Any],
    kept_assignments: list[Any],
    dropped_assignments: list[Any],
    synthesis: Any,
) -> tuple[dict[str, list[dict[str, str]]], list[dict[str, str]], dict[str, list[dict[str, str]]]]:
    """Customer-managed policies still needed, per account, and each set's references."""
    # Customer-managed policies still needed: those the kept permission sets reference, in
    # the accounts they are still provisioned to, each with the document it was planned with.
    references_of = {
        name: policy_references(
            ps.customer_managed_policies, ps.permissions_boundary, ps.customer_managed_choice
        )
        for name, ps in permission_sets.items()
    }
    references = {
        name: {(r["name"], r["path"]) for r in refs} for name, refs in references_of.items()
    }
    hash_in_account = {
        (a.account_id, f"{r['path']}{r['name']}"): r["document_hash"]
        for a in kept_assignments
        for r in references_of.get(a.permission_set_name, [])
        if "document_hash" in r
    }
    needed = {
        (a.account_id, ref_name, ref_path)
        for a in kept_assignments
        for ref_name, ref_path in references.get(a.permission_set_name, set())
    }
    required: dict[str, list[dict[str, str]]] = {}
    required_list = []
    for account_id, policy_name, path in sorted(synthesis.required_customer_policies):
        if dropped_assignments and (account_id, policy_name, path) not in needed:
            continue
        document_hash = hash_in_account.get((account_id, f"{path}{policy_name}"))
        required.setdefault(account_id, []).append(
            _with_hash({"name": policy_name, "path": path}, document_hash)
        )
        required_list.append(
            _with_hash({"account_id": account_id, "name": policy_name, "path": path}, document_hash)
        )
    return required, required_list, references_of


def _provision_action(
    name: str, account_id: str, definition_hash: str, set_action: str, params: dict[str, Any]
) -> PlanAction:
    """Provision set ``name`` to one account, after the action that creates or updates it."""
    return PlanAction(
        id=f"provision:provision-permission-set:{name}:{account_id}",
        stage=Stage.PROVISION,
        kind="provision-permission-set",
        account_id=account_id,
        target=name,
        target_fingerprint=sha256_of({"definition": definition_hash, "account": account_id}),
        params=params,
        depends_on=[set_action],
    )


def _provision_actions(
    kept_assignments: list[Any],
    definition_hash: dict[str, str],
    set_action: dict[str, str],
    updated: dict[str, OrgPermissionSet],
    references_of: dict[str, list[dict[str, str]]],
    required: dict[str, list[dict[str, str]]],
) -> tuple[list[PlanAction], dict[tuple[str, str], str], list[Any]]:
    """Provision each set to each account that receives it, or that has an updated one."""
    actions: list[PlanAction] = []
    provision_ids: dict[tuple[str, str], str] = {}
    assignments = sorted(
        kept_assignments,
        key=lambda a: (a.account_id, a.permission_set_name, a.principal_type, a.principal_id),
    )
    for account_id, name in sorted({(a.account_id, a.permission_set_name) for a in assignments}):
        action = _provision_action(
            name,
            account_id,
            definition_hash[name],
            set_action[name],
            {"required_customer_policies": required.get(account_id, [])},
        )
        provision_ids[(account_id, name)] = action.id
        actions.append(action)
    # An updated set changes nothing in an account until it is provisioned there again
    # (sso-admin, ProvisionPermissionSet): every account that already has it, in any wave.
    for name, known in sorted(updated.items()):
        references = sorted(references_of.get(name, []), key=lambda r: (r["path"], r["name"]))
        for account_id in known.accounts:
            if (account_id, name) in provision_ids:
                continue
            action = _provision_action(
                name,
                account_id,
                definition_hash[name],
                set_action[name],
                {
                    "required_customer_policies": references,
                    "reprovision": f"updated by {set_action[name]}",
                },
            )
            provision_ids[(account_id, name)] = action.id
            actions.append(action)
    return actions, provision_ids, assignments


def _assignment_actions(
    assignments: list[Any], provision_ids: dict[tuple[str, str], str], who: _Who
) -> tuple[list[PlanAction], list[dict[str, Any]], _ByUser, _ByUser]:
    """One action per assignment, and which users each gives access to."""
    actions: list[PlanAction] = []
    assignment_ids: dict[tuple[str, str], list[str]] = {}  # (account, user) -> action ids
    ps_of_user: dict[tuple[str, str], list[str]] = {}
    assignment_dicts = []
    for assignment in assignments:
        raw = flat_fields(assignment)  # flat strings: what asdict gives, without its deep copy
        assignment_dicts.append(raw)
        action_id = (
            f"provision:create-assignment:{assignment.account_id}:{assignment.permission_set_name}"
            f":{assignment.principal_type}:{assignment.principal_id}"
        )
        actions.append(
            PlanAction(
                id=action_id,
                stage=Stage.PROVISION,
                kind="create-assignment",
                account_id=assignment.account_id,
                target=f"{assignment.principal_type.lower()} {assignment.principal_name}"
                f" -> {assignment.permission_set_name}",
                target_fingerprint=sha256_of(raw),
                params=raw,
                depends_on=[provision_ids[(assignment.account_id, assignment.permission_set_name)]],
            )
        )
        # Who this assignment gives access to: the user itself, or the group's IAM members.
        for iam_user in who.covered_users(assignment):
            assignment_ids.setdefault((assignment.account_id, iam_user), []).append(action_id)
            ps_of_user.setdefault((assignment.account_id, iam_user), []).append(
                assignment.permission_set_name
            )
    return actions, assignment_dicts, assignment_ids, ps_of_user


def plan_access(
    *,
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    group_mappings: list[GroupMapping],
    synthesis: Any,
    extra_findings: list[Finding] | None = None,
    organization: dict[str, OrgPermissionSet] | None = None,
) -> AccessPlan:
    """The synthesized access as planned: blocked users' access left out, sets and assignments.

    Args:
        synthesis: a ``domain.synthesis.SynthesisResult``.
        organization: the permission sets earlier plans created, by fingerprint
            (:func:`domain.waves.organization_sets`). A set of this plan whose definition
            differs from the one the organization has (session duration, description) is
            planned as an update, re-provisioned to every account that already has it.
    """
    findings = sorted(
        [*synthesis.findings, *(extra_findings or [])],
        key=lambda f: (f.severity, f.kind, f.account_id or "", f.subject or "", f.message),
    )
    who = _who(inventories, user_mappings, group_mappings)
    blocked = _users_blocked(findings, who.group_members)
    permission_sets = {ps.name: ps for ps in synthesis.permission_sets}
    kept, dropped, permission_sets = _kept_assignments(
        findings, synthesis, permission_sets, who, blocked
    )
    set_actions, ps_dicts, set_action, updated, definition_hash = _set_actions(
        permission_sets, organization
    )
    required, required_list, references_of = _required_policies(
        permission_sets, kept, dropped, synthesis
    )
    provisions, provision_ids, assignments = _provision_actions(
        kept, definition_hash, set_action, updated, references_of, required
    )
    creations, assignment_dicts, assignment_ids, ps_of_user = _assignment_actions(
        assignments, provision_ids, who
    )
    return AccessPlan(
        findings=findings,
        actions=[*set_actions, *provisions, *creations],
        permission_sets=ps_dicts,
        assignments=assignment_dicts,
        required_customer_policies=required_list,
        assignment_ids=assignment_ids,
        permission_sets_of_user=ps_of_user,
        blocked=blocked,
    )
