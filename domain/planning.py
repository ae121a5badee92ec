"""Planning: the inventory, its mapping and the synthesized access, made into an ordered plan.

The users' outcomes and the synthesized access are computed here; each registered stage
(``domain.stages``) then plans its own actions from them, in runbook order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.access_plan import AccessPlan, plan_access
from domain.central_access import central_access
from domain.central_roles import member_role_name
from domain.central_spec import CENTRAL_ROLES, Central
from domain.delegated_admin import management_account_findings
from domain.permission_set_quotas import role_quota_findings
from domain.plan import (
    Outcome,
    Plan,
    PlanAction,
    UserPlan,
    user_fingerprint,
)
from domain.records import (
    AccountInventory,
    Finding,
    Group,
    GroupMapping,
    MatchStatus,
    User,
    UserClass,
    UserMapping,
)
from domain.role_replacement import PLACEABLE_CONFIDENCE, RoleReplacement, plan_replacement
from domain.stages import order_of, stages
from domain.waves import OrgPermissionSet
from domain.workloads import Placement


@dataclass
class PlanInputs:
    """What every stage's planner reads: the users as planned, and what earlier stages planned.

    Attributes:
        users: One entry per IAM user of the plan's accounts, with its outcome.
        records: ``(account id, user name)`` -> the user as the inventory saw it.
        settings: The spec's planning settings (``bake_days`` ...).
        prerequisites: ``(account id, user name)`` -> action ids that must be done before the
            user loses access (the assignments that give it the new access).
        actions: The actions earlier stages planned (stages plan in their order).
    """

    users: list[UserPlan]
    records: dict[tuple[str, str], User]
    settings: dict[str, Any]
    prerequisites: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    actions: list[PlanAction] = field(default_factory=list)
    # What the access synthesis planned (the provision stage's inputs): plan_access's result.
    access: Any = None
    # (account id, user name) -> where the workload user's key is used from (the workloads
    # step's latest placements, ``domain.workloads.Placement``): the replace stage's inputs.
    workloads: dict[tuple[str, str], Placement] = field(default_factory=dict)
    # (account id, user name) -> the role that replaces a ``replace-with-role`` user's keys
    # (``domain.role_replacement``), computed with the users' outcomes.
    replacements: dict[tuple[str, str], RoleReplacement] = field(default_factory=dict)
    # Findings a stage's planning adds (the replace stage's trust checks): in the plan's.
    findings: list[Finding] = field(default_factory=list)
    migration: str = ""


def unseen_account_findings(
    inventories: list[AccountInventory],
    reasons: dict[str, str],
    exclude_accounts: list[str],
) -> list[Finding]:
    """One finding per in-scope account the inventory could not read.

    A plan made without seeing an account can't say what happens to that account's IAM users:
    it is blocking, unless the spec now excludes the account (by id, or by its parent OU), in
    which case it is only noted.

    Args:
        inventories: The snapshot's accounts; those with ``error`` set were not read.
        reasons: account id -> failure kind (``unreachable``, ``cannot-assume-role``, ...).
        exclude_accounts: The spec's ``scope.exclude_accounts``.
    """
    findings = []
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        if not inventory.error:
            continue
        account = inventory.account
        reason = reasons.get(account.account_id, "inventory-failed")
        label = f"{account.account_id} ({account.name})" if account.name else account.account_id
        excluded = account.account_id in exclude_accounts or (
            account.parent_id is not None and account.parent_id in exclude_accounts
        )
        details = {"account_name": account.name, "reason": reason, "error": inventory.error}
        if excluded:
            findings.append(
                Finding(
                    severity="info",
                    kind="account-not-inventoried-excluded",
                    message=f"account {label} was not inventoried ({reason}) and the spec now "
                    "excludes it: nothing is planned for it",
                    account_id=account.account_id,
                    details=details,
                )
            )
            continue
        findings.append(
            Finding(
                severity="blocking",
                kind="account-not-inventoried",
                message=f"account {label} could not be inventoried ({reason}: "
                f"{inventory.error}): this plan can't say what happens to its IAM users; run "
                "'iamc inventory' again once it answers, or exclude it in [scope] "
                "exclude_accounts",
                account_id=account.account_id,
                details=details,
            )
        )
    return findings


@dataclass
class _Workloads:
    """The workloads step's placements, and what planning their replacement found."""

    placements: dict[tuple[str, str], Placement]
    replacements: dict[tuple[str, str], RoleReplacement] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    why_not: dict[tuple[str, str], str] = field(default_factory=dict)
    # The spec's permissions boundary (``settings["permissions_boundary"]``): every role's.
    boundary: dict[str, Any] | None = None

    def consider(self, account_id: str, user: User, groups: dict[str, Group]) -> None:
        """Plan the role of a workload user whose runtime is placed well enough."""
        key = (account_id, user.name)
        placement = self.placements.get(key)
        if user.user_class != UserClass.WORKLOAD or placement is None:
            return
        if user.password_enabled:
            self.why_not[key] = "has a console password: a person signs in as it, not a workload"
            return
        if not placement.placeable or placement.confidence not in PLACEABLE_CONFIDENCE:
            evidence = "; ".join(placement.evidence[:3]) or "no usable evidence"
            guess = (
                "runtime unknown"
                if not placement.placeable
                else f"runtime {placement.runtime} only a guess ({placement.confidence} confidence)"
            )
            self.why_not[key] = f"{guess}: {evidence}; declare it in [[workloads]]"
            return
        replacement, findings = plan_replacement(placement, user, groups, self.boundary)
        self.findings.extend(findings)
        if replacement is None:
            self.why_not[key] = "; ".join(f.message for f in findings) or "no role for it"
            return
        self.replacements[key] = replacement


def _user_plans(
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    access: AccessPlan,
    workloads: _Workloads,
) -> tuple[list[UserPlan], dict[tuple[str, str], User]]:
    """What the plan does with each IAM user, and the users as the inventory saw them."""
    mappings = {(m.account_id, m.iam_user): m for m in user_mappings}
    users: list[UserPlan] = []
    records: dict[tuple[str, str], User] = {}
    for inventory in sorted(inventories, key=lambda i: i.account.account_id):
        account_id = inventory.account.account_id
        groups = {g.name: g for g in inventory.groups}
        for user in sorted(inventory.users, key=lambda u: u.name):
            key = (account_id, user.name)
            records[key] = user
            mapping = mappings.get(key)
            workloads.consider(account_id, user, groups)
            outcome, reason = _outcome(user, mapping, access.blocked.get(key), workloads, key)
            users.append(
                UserPlan(
                    account_id=account_id,
                    user=user.name,
                    user_class=str(user.user_class),
                    outcome=outcome,
                    reason=reason,
                    target_fingerprint=user_fingerprint(user),
                    identity=mapping.identity_user_name if mapping else None,
                    permission_sets=sorted(set(access.permission_sets_of_user.get(key, [])))
                    if outcome == Outcome.MIGRATE
                    else [],
                )
            )
    return users, records


def build_plan(
    *,
    migration: str,
    inventory_snapshot_id: int,
    mapping_run_id: int | None,
    inventories: list[AccountInventory],
    user_mappings: list[UserMapping],
    group_mappings: list[GroupMapping],
    synthesis: Any,
    settings: dict[str, Any],
    extra_findings: list[Finding] | None = None,
    wave: dict[str, Any] | None = None,
    organization: dict[str, OrgPermissionSet] | None = None,
    workloads: dict[tuple[str, str], Placement] | None = None,
    management_account_id: str | None = None,
    caller_account_id: str | None = None,
    usage_read_id: int | None = None,
    earlier_roles: dict[str, list[str]] | None = None,
    earlier_principals: dict[tuple[str, str], list[str]] | None = None,
) -> Plan:
    """Turn an inventory, its mapping and the synthesized access into an ordered plan.

    Each registered stage plans its actions in runbook order (``domain.stages``).

    Args:
        synthesis: a ``domain.synthesis.SynthesisResult``.
        settings: what the change board should see of the spec (bake days, inactive days...).
        wave: ``{"name", "accounts"}`` when the plan is one wave's.
        organization: the permission sets earlier plans created (see :func:`plan_access`).
        workloads: the workloads step's placements (``(account, user)`` -> placement).
        management_account_id: the organization's management account (the inventory's
            DescribeOrganization); with ``caller_account_id``, the account the tool runs
            from. When they differ the tool is a delegated administrator: the users whose
            access lands in the management account are skipped (``domain.delegated_admin``).
        usage_read_id: the usage read synthesis looked at (its least privilege section is
            ``synthesis.least_privilege``), recorded as provenance.
        earlier_roles: with ``settings["target"] == "central-roles"``: access name -> the
            member accounts where earlier plans created its role
            (:func:`domain.waves.central_role_accounts`).
        earlier_principals: with ``central-roles``: (member account, role name) -> the
            central principals earlier plans put in that role's trust, which it keeps
            (:func:`domain.waves.central_role_principals`).
    """
    delegated = management_account_findings(
        synthesis.assignments, inventories, management_account_id, caller_account_id
    )
    access = plan_access(
        inventories=inventories,
        user_mappings=user_mappings,
        group_mappings=group_mappings,
        synthesis=synthesis,
        extra_findings=[*(extra_findings or []), *delegated],
        organization=organization,
    )
    central = _central(settings)
    access = _for_target(access, central, migration, earlier_roles, earlier_principals)
    placed = _Workloads(dict(workloads or {}), boundary=settings.get("permissions_boundary"))
    users, records = _user_plans(inventories, user_mappings, access, placed)
    inputs = _staged(users, records, settings, access, placed, migration)
    # Each account's IAM role quota against the roles the planned actions add there.
    there = _roles_there(organization, central, earlier_roles)
    inputs.findings.extend(role_quota_findings(inventories, inputs.actions, there))
    actions = sorted(inputs.actions, key=lambda a: (order_of(a.stage), a.account_id or "", a.id))
    return Plan(
        migration=migration,
        inventory_snapshot_id=inventory_snapshot_id,
        mapping_run_id=mapping_run_id,
        settings=settings,
        users=users,
        actions=actions,
        permission_sets=access.permission_sets,
        assignments=access.assignments,
        required_customer_policies=access.required_customer_policies,
        findings=[*access.findings, *inputs.findings],
        wave=wave,
        least_privilege=getattr(synthesis, "least_privilege", None),
        usage_read_id=usage_read_id if getattr(synthesis, "least_privilege", None) else None,
    )


def _for_target(
    access: AccessPlan,
    central: Central | None,
    migration: str,
    earlier_roles: dict[str, list[str]] | None,
    earlier_principals: Any,
) -> AccessPlan:
    """Identity Center's access as planned, or with ``central-roles`` the same people and
    access provisioned as member roles the central account's people switch into
    (:func:`domain.central_access.central_access`)."""
    if central is None:
        return access
    return central_access(
        access,
        central=central,
        migration=migration,
        earlier_roles=earlier_roles,
        earlier_principals=earlier_principals,
    )


def _staged(
    users: list[UserPlan],
    records: dict[tuple[str, str], User],
    settings: dict[str, Any],
    access: AccessPlan,
    placed: _Workloads,
    migration: str,
) -> PlanInputs:
    """What the stages plan from, with each registered stage's actions added in runbook order."""
    inputs = PlanInputs(
        users=users,
        records=records,
        settings=settings,
        prerequisites=access.assignment_ids,
        access=access,
        workloads=placed.placements,
        replacements=placed.replacements,
        findings=list(placed.findings),
        migration=migration,
    )
    for definition in stages():
        inputs.actions.extend(definition.plan_actions(inputs))
    return inputs


def _central(settings: dict[str, Any]) -> Central | None:
    """The spec's ``[central]`` when the target is ``central-roles``; None for Identity Center."""
    if settings.get("target") != CENTRAL_ROLES:
        return None
    return Central.model_validate(settings["central"])


def _roles_there(
    organization: dict[str, OrgPermissionSet] | None,
    central: Central | None,
    earlier_roles: dict[str, list[str]] | None,
) -> set[tuple[str, str]]:
    """(account, target) an earlier wave provisioned: its role is there, counted in ``Roles``."""
    there = {(a, k.name) for k in (organization or {}).values() for a in k.accounts}
    if central is not None:
        # An earlier wave's member role is there already (counted in the account's Roles).
        there |= {
            (a, member_role_name(central, name))
            for name, accounts in (earlier_roles or {}).items()
            for a in accounts
        }
    return there


def _outcome(
    user: User,
    mapping: UserMapping | None,
    blocked: str | None,
    workloads: _Workloads,
    key: tuple[str, str],
) -> tuple[Outcome, str]:
    if user.user_class == UserClass.PROTECTED:
        return Outcome.SKIP_PROTECTED, user.class_reason
    if user.user_class == UserClass.WORKLOAD:
        return _workload_outcome(workloads, key)
    if blocked:
        return Outcome.SKIP_BLOCKED, blocked
    if user.user_class == UserClass.UNUSED:
        return Outcome.RETIRE, user.class_reason
    if mapping is None:
        return Outcome.SKIP_UNMATCHED, "no mapping result for this user (run iamc map)"
    if mapping.status == MatchStatus.AMBIGUOUS:
        return Outcome.SKIP_AMBIGUOUS, f"ambiguous: {', '.join(mapping.candidates)}"
    if mapping.status != MatchStatus.MATCHED:
        return Outcome.SKIP_UNMATCHED, mapping.reason or "no identity-store user matches"
    return Outcome.MIGRATE, f"maps to {mapping.identity_user_name} (rule {mapping.rule})"


def _workload_outcome(workloads: _Workloads, key: tuple[str, str]) -> tuple[Outcome, str]:
    """A placed workload gets a role; the others keep their keys, with why."""
    replacement = workloads.replacements.get(key)
    if replacement is not None:
        return (
            Outcome.REPLACE_WITH_ROLE,
            f"key used from {replacement.runtime} ({replacement.confidence} confidence): "
            f"role {replacement.role_name} replaces it",
        )
    if key in workloads.why_not:
        return Outcome.SKIP_WORKLOAD, f"keeps its key: {workloads.why_not[key]}"
    return (
        Outcome.SKIP_WORKLOAD,
        "programmatic credentials only: needs an IAM role, not a person (runtime unknown: run "
        "iamc workloads, or declare it in [[workloads]])",
    )
