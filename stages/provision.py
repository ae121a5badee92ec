"""The provision stage: the synthesized access, in Identity Center or as central roles.

It plans the synthesized access (``domain.access_plan``). For Identity Center it runs the
permission sets in the management account first, then one task per account (provision its
sets, create its assignments, verify them). For the ``central-roles`` target it runs the
central account's groups, assume policies and memberships first, then one task per account
(create its member roles, verify them). Either way it re-reads each account's IAM users live
before its first change and leaves an account untouched when IAM moved since the plan. A
rollback undoes what it created, keeping what another wave's plan still uses. Approved with
``all``.

The AWS adapters are imported inside the functions that run the stage: importing a stage
module, which listing the stages does, costs no AWS SDK (``iamc status``, ``plan show`` and
``approve`` stay fast; ``tests/iamc/test_read_only_imports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from domain.central_roles import CENTRAL_SIDE_KINDS, CREATE_ACCESS_GROUP, CREATE_MEMBER_ROLE
from domain.plan import PlanAction, Stage
from domain.planning import PlanInputs
from domain.progress import emit
from domain.stages import WITH_ALL, StageDefinition, register
from engine.preconditions import StagePreconditions, refuse_if_stale
from engine.stage_run import AccountReport, StageRun, run_concurrently

if TYPE_CHECKING:
    from tasks.handler import ExecutionContext, Handler


def handlers() -> dict[str, Handler]:
    """Action kind -> how it is done, checked and undone (the adapters, on first use)."""
    from tasks.assignments import CreateAssignment
    from tasks.central_access import AddGroupMember, CreateAccessGroup, PutAccessPolicy
    from tasks.member_roles import CreateMemberRole
    from tasks.permission_sets import (
        CreatePermissionSet,
        ProvisionPermissionSet,
        UpdatePermissionSet,
    )

    return {
        "create-permission-set": CreatePermissionSet(),
        "update-permission-set": UpdatePermissionSet(),
        "provision-permission-set": ProvisionPermissionSet(),
        "create-assignment": CreateAssignment(),
        "create-access-group": CreateAccessGroup(),
        "put-access-policy": PutAccessPolicy(),
        "add-group-member": AddGroupMember(),
        "create-member-role": CreateMemberRole(),
    }


# Rollback undoes in reverse order: assignments, then provisioning, then updates of sets an
# earlier wave created (restored and re-provisioned), then the sets this plan created.
# Central roles: who may switch (memberships, then the assume policies, then the groups)
# before the member roles. A plan has one target's kinds, so each keeps its own order.
UNDO_ORDER = (
    "create-assignment",
    "provision-permission-set",
    "update-permission-set",
    "create-permission-set",
    "add-group-member",
    "put-access-policy",
    "create-access-group",
    "create-member-role",
)
# Done in the management account before any account is provisioned.
PERMISSION_SET_KINDS = ("create-permission-set", "update-permission-set")
# Done in the central account before any member account (central-roles): the groups first,
# then what depends on them (``domain.central_roles.CENTRAL_SIDE_KINDS``).
GROUP_KINDS = (CREATE_ACCESS_GROUP,)


# Re-proved before the first change in each account (``engine.preflight``): the stage takes
# no access away, so it re-reads accounts, not users one by one.
PRECONDITIONS = StagePreconditions(
    per_account=(
        "the account's IAM users as the plan saw them (access unchanged since the plan)",
        "the planned identity-store principals exist, and each referenced customer-managed "
        "policy exists there with the planned document (GetPolicy, GetPolicyVersion)",
        "central-roles: the planned central principals exist in the central account "
        "(GetUser, GetRole) instead of identity-store principals",
        "central-roles: no planned member role exists as another's role differing from the "
        "plan (GetRole in each member account, before the central account's first change)",
    ),
    per_user=(),
)


def plan_actions(inputs: PlanInputs) -> list[PlanAction]:
    """The synthesized access's actions: sets, their provisioning, the assignments."""
    return list(inputs.access.actions)


def create_permission_sets(rt: StageRun, actions: list[PlanAction]) -> AccountReport:
    """Create (or adopt) every permission set, in the management account, several at once.

    Every account waits for them, so they go at the rate sso-admin allows rather than one
    call at a time; each set's own calls stay in order.
    """
    report = AccountReport("management")
    # A set that fails leaves only its own provisioning and assignments blocked.
    run_concurrently(rt, "management", actions, report, "create", stop_on_failure=False)
    return report


def create_central_access(rt: StageRun, actions: list[PlanAction]) -> AccountReport:
    """Create (or adopt) the central account's groups, then put their assume policies and
    add their members, several at once (central-roles).

    The central account is reached like a member account (its role assumed) before its first
    change; a group that fails leaves only its own policy and members blocked.
    """
    central = next(a.account_id for a in actions if a.account_id)
    report = AccountReport(central or "central")
    if rt.ctx.reach is not None and central and _pending(rt, actions):
        rt.ctx.reach(central)
    groups = [a for a in actions if a.kind in GROUP_KINDS]
    rest = [a for a in actions if a.kind not in GROUP_KINDS]
    run_concurrently(rt, central or "central", groups, report, "group", stop_on_failure=False)
    run_concurrently(rt, central or "central", rest, report, "central", stop_on_failure=False)
    return report


def create_first(rt: StageRun, actions: list[PlanAction]) -> AccountReport:
    """What runs before every account: the permission sets, or the central account's work."""
    if any(a.kind in CENTRAL_SIDE_KINDS for a in actions):
        return create_central_access(rt, actions)
    return create_permission_sets(rt, actions)


def _pending(rt: StageRun, actions: list[PlanAction]) -> list[PlanAction]:
    return [
        a
        for a in actions
        if (entry := rt.store.journal.journal_entry(rt.plan_id, a.id)) is None or not entry.done
    ]


def _refused_as_changed(
    rt: StageRun, account_id: str, actions: list[PlanAction], report: AccountReport
) -> bool:
    """Re-read the account live before its first change; True (and why) if it changed.

    Only when the account still has work to do: a finished account is not re-read.
    """
    pending = _pending(rt, actions)
    planned = rt.planned_account(account_id)
    if not pending or planned is None:
        return False
    from engine.preflight import live_access_changes  # IAM reads

    changes = live_access_changes(
        rt.ctx.member(account_id), planned, rt.users_acted_for(account_id)
    )
    if not changes:
        return False
    for action in pending:
        report.statuses[action.id] = "refused"
    report.refusal = (
        "nothing changed here, because IAM changed since the plan was made (re-run inventory, "
        "map and plan, then approve again): " + "; ".join(changes)
    )
    report.errors.append(f"account {account_id}: {report.refusal}")
    return True


def _verify_done(
    rt: StageRun,
    account_id: str,
    actions: list[PlanAction],
    report: AccountReport,
    verify: Callable[[ExecutionContext, list[PlanAction]], list[str]],
) -> None:
    """Confirm the account's done assignments (or member roles) exist, as soon as its own
    work is over.

    Inside the account's task, so a missing one fails that account (not the run's end),
    while the other accounts are still at work.
    """
    rt.executor.check_alive()
    done = [
        a
        for a in actions
        if (entry := rt.store.journal.journal_entry(rt.plan_id, a.id)) is not None and entry.done
    ]
    missing = verify(rt.ctx, done)
    report.errors.extend(f"verify: {m}" for m in missing)
    emit("account-verified", account_id=account_id, checked=len(done), missing=len(missing))


def _verify_account(
    rt: StageRun, account_id: str, assignments: list[PlanAction], report: AccountReport
) -> None:
    """Confirm the account's done assignments exist (Identity Center)."""
    from tasks.assignments import verify_assignments

    _verify_done(rt, account_id, assignments, report, verify_assignments)


def _verify_roles(
    rt: StageRun, account_id: str, roles: list[PlanAction], report: AccountReport
) -> None:
    """Confirm the account's done member roles exist and trust as planned (central-roles)."""
    from tasks.member_roles import verify_member_roles

    _verify_done(rt, account_id, roles, report, verify_member_roles)


def provision_roles(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    """Create (or adopt) the account's member roles, several at once, then verify them."""
    report = AccountReport(account_id)
    roles = [a for a in actions if a.kind == CREATE_MEMBER_ROLE]
    if not _refused_as_changed(rt, account_id, actions, report):
        run_concurrently(rt, account_id, roles, report, "roles")
    _verify_roles(rt, account_id, roles, report)
    return report


def provision_account(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    """Provision the account's permission sets, create its assignments, then verify them.

    The permission sets are provisioned together, then the assignments are created, each on
    up to ``max_outstanding`` threads (all accounts together capped by the context's
    semaphore of outstanding creations); the first FAILED one stops the account's actions not
    yet started, and its reason is recorded. Whatever happened, the assignments the journal
    has as done are then verified (:func:`tasks.assignments.verify_assignments`).
    """
    if any(a.kind == CREATE_MEMBER_ROLE for a in actions):
        return provision_roles(rt, account_id, actions)
    report = AccountReport(account_id)
    assignments = [a for a in actions if a.kind == "create-assignment"]
    if not _refused_as_changed(rt, account_id, actions, report):
        provisions = [a for a in actions if a.kind == "provision-permission-set"]
        if run_concurrently(rt, account_id, provisions, report, "provision"):
            run_concurrently(rt, account_id, assignments, report, "assign")
    _verify_account(rt, account_id, assignments, report)
    return report


def _first_label(actions: list[PlanAction]) -> str:
    """Identity Center's permission sets, or the identity account's groups and policies."""
    if actions and all(a.kind in CENTRAL_SIDE_KINDS for a in actions):
        return "identity account: groups, policies, memberships"
    return "create permission sets"


PROVISION = register(
    StageDefinition(
        name=Stage.PROVISION,
        order=0,
        summary="permission sets and account assignments in Identity Center",
        plan_actions=plan_actions,
        handlers=handlers,
        per_account=provision_account,
        first=create_first,
        first_kinds=PERMISSION_SET_KINDS + CENTRAL_SIDE_KINDS,
        first_label="create permission sets",
        first_label_for=_first_label,
        # Outside a flow one account at a time, as the CLI's direct path always did.
        accounts_at_once=1,
        undo_order=UNDO_ORDER,
        preconditions=PRECONDITIONS,
        before_run=(refuse_if_stale,),
        approval=WITH_ALL,
        undo_keeps_shared=True,
    )
)
