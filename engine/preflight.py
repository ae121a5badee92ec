"""Read-only checks before a stage changes anything: is the plan still true of live AWS?

``stale_targets`` compares what the plan was made from with what is there now;
``preflight`` finds what would stop a run half-way (a conflicting permission set, a missing
customer-managed policy) or what must not be granted at all (central-roles: a member role of a
planned name that someone else made). Both only read.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from domain.access import effective_access
from domain.central_roles import CREATE_MEMBER_ROLE
from domain.central_spec import CENTRAL_ROLES
from domain.least_privilege_report import usage_staleness
from domain.plan import Outcome, Plan, PlanAction, Stage, user_fingerprint
from domain.policy_documents import canonical_json
from domain.records import AccountInventory, Group, User
from engine.account_work import STOPS_THE_RUN
from state.journal import DONE_STATUSES
from state.store import Store
from tasks.aws import failure_reason
from tasks.central_access import central_principal_problems
from tasks.handler import ExecutionContext
from tasks.iam_users import read_account_access
from tasks.identity_store import principal_problems
from tasks.member_roles import MIGRATION_TAG, _migration, _ours, differences, read_role_state
from tasks.permission_sets import (
    CreatePermissionSet,
    UpdatePermissionSet,
    missing_customer_policies,
)


def stale_targets(
    store: Store,
    migration_id: int,
    plan: Plan,
    session: Any,
    store_id: str,
    stages: frozenset[Stage] = frozenset({Stage.PROVISION}),
    member: Callable[[str], Any] | None = None,
) -> list[str]:
    """What the provision stage's targets depend on that changed since the plan.

    Two checks: every assignment's identity-store principal still exists under its planned
    name; and the IAM users the assignments serve are as planned — taken as true while the
    plan's inventory snapshot is still the latest complete one, and otherwise checked user
    by user against the newer snapshot's fingerprints (a routine re-inventory that changed
    nothing relevant does not make an approved plan stale). A plan that relied on a usage read
    is stale once the latest read found other use (``usage_staleness``) — for provisioning
    only: once provisioned, people work through their Identity Center roles, so a newer read
    of their IAM users finds less use, which must not stop disabling or deleting those users.

    For the ``central-roles`` target (``plan.settings["target"]``) the principals checked are
    the central account's: every ARN a member role's trust names and every planned group
    member (GetUser, GetRole there), instead of the identity store's.

    Args:
        stages: The stages of the run's actions (the usage check applies to provision's).
        member: account id -> a session there (central-roles: the central account's).

    Returns:
        One message per stale target; empty when the plan is current.
    """
    problems: list[str] = []
    latest = store.snapshots.latest_snapshot(migration_id)
    if latest is None:
        problems.append("the migration has no complete inventory snapshot any more")
    elif latest.id != plan.inventory_snapshot_id:
        current = {
            (inventory.account.account_id, user.name): user_fingerprint(user)
            for inventory in store.snapshots.load_snapshot(latest.id)
            for user in inventory.users
        }
        for user in plan.users:
            if user.outcome != Outcome.MIGRATE:
                continue
            now = current.get((user.account_id, user.user))
            if now is None:
                problems.append(
                    f"user {user.account_id}/{user.user}: gone in inventory snapshot {latest.id}"
                )
            elif now != user.target_fingerprint:
                problems.append(
                    f"user {user.account_id}/{user.user}: changed since the plan's snapshot "
                    f"{plan.inventory_snapshot_id} (snapshot {latest.id} differs)"
                )
    if plan.settings.get("target") == CENTRAL_ROLES:
        problems.extend(_central_principal_problems(plan, member))
    else:
        principals = [
            (a.params["principal_type"], a.params["principal_id"], a.params["principal_name"])
            for a in plan.actions
            if a.stage == Stage.PROVISION and a.kind == "create-assignment"
        ]
        problems.extend(principal_problems(session, store_id, principals))
    if plan.least_privilege is not None and Stage.PROVISION in stages:
        # The usage the plan relied on (its least privilege section is in its hash).
        usage = usage_staleness(plan.least_privilege, store.usage.latest(migration_id))
        if usage:
            problems.append(usage)
    return problems


def _central_principal_problems(plan: Plan, member: Callable[[str], Any] | None) -> list[str]:
    arns = sorted(
        {
            arn
            for a in plan.actions
            if a.stage == Stage.PROVISION and a.kind == "create-member-role"
            for arn in a.params.get("principals") or []
        }
    )
    users = sorted(
        {
            (a.account_id or "", a.params["user_name"])
            for a in plan.actions
            if a.stage == Stage.PROVISION and a.kind == "add-group-member"
        }
    )
    if not arns and not users:
        return []
    if member is None:
        raise ValueError("central-roles plans need a session factory to check central principals")
    return central_principal_problems(member, arns, users)


def preflight(
    store: Store, plan_id: int, ctx: ExecutionContext, actions: list[PlanAction]
) -> tuple[list[str], dict[str, str]]:
    """Read-only checks that would otherwise stop the run half-way.

    A permission set that exists under a planned name with another definition (and is not
    our own unfinished work) stops the whole run: every account would use it. So does a
    planned member role (central-roles) that someone else made: see
    :func:`member_role_conflicts`. A target account whose customer-managed policies are
    missing, or that can't be read at all (its role can't be assumed), is that account's
    failure alone (``engine.account_work``).

    Returns:
        What refuses the run; and account id -> why that account can't be worked on.
    """
    problems = []
    accounts: dict[str, list[str]] = {}
    unreadable: set[str] = set()
    probes = {
        "create-permission-set": CreatePermissionSet(),
        "update-permission-set": UpdatePermissionSet(),
    }
    for action in actions:
        if action.kind in probes:
            entry = store.journal.journal_entry(plan_id, action.id)
            if entry is not None and (
                entry.status in DONE_STATUSES or entry.intent.get("existed_before") is False
            ):
                continue
            live = probes[action.kind].probe(ctx, action)
            if live.exists and live.difference:
                problems.append(
                    f"permission set {action.target} already exists and differs from the plan: "
                    f"{live.difference}"
                )
        elif action.kind == "provision-permission-set":
            account_id = action.account_id or ""
            policies = action.params.get("required_customer_policies") or []
            if policies and account_id not in unreadable:
                why = _missing_policies(ctx, account_id, action.target, policies)
                if why and why[0].startswith(UNREADABLE):
                    unreadable.add(account_id)  # one read that fails is enough
                accounts.setdefault(account_id, []).extend(why)
    problems.extend(member_role_conflicts(ctx, actions))
    failures = {a: "; ".join(sorted(set(why))) for a, why in accounts.items() if why}
    return sorted(set(problems)), failures


# Member accounts whose planned roles are read at once (one GetRole per absent role).
ROLE_CHECK_CONCURRENCY = 8


def member_role_conflicts(ctx: ExecutionContext, actions: list[PlanAction]) -> list[str]:
    """Planned member roles (central-roles) that exist as someone else's role, read live.

    The central account's side runs first (``stages.provision``): once its assume policy
    allows ``sts:AssumeRole`` on a role ARN, a role of that name that is not this
    migration's (one trusting the identity account's root, with permissions nobody reviewed)
    is assumable by the planned people, though ``create-member-role`` would later refuse it
    as a conflict. So each planned role is read in its account before anything is changed: a
    role identical to the plan is adopted as ``create-member-role`` would; one this migration
    made (tag ``iamc:migration``) under the planned path is brought to the plan; any other
    refuses the run. An account that can't be read refuses it too: the central side would
    allow roles no one checked.

    Returns:
        One message per conflicting role or unreadable account; empty when none.
    """
    by_account: dict[str, list[PlanAction]] = {}
    for action in actions:
        if action.kind == CREATE_MEMBER_ROLE:
            by_account.setdefault(action.account_id or "", []).append(action)
    if not by_account:
        return []

    def account(account_id: str, roles: list[PlanAction]) -> list[str]:
        try:
            iam = ctx.iam(account_id)
            return [p for action in roles for p in _role_conflict(iam, account_id, action)]
        except STOPS_THE_RUN:
            raise
        except Exception as err:
            return [
                f"account {account_id}: its planned member roles could not be read "
                f"({failure_reason(err)}); the central account would allow switching into "
                "roles no one checked. Make the account reachable, then apply again (or "
                "re-plan without it)"
            ]

    workers = max(1, min(ROLE_CHECK_CONCURRENCY, len(by_account)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="role-check") as pool:
        futures = [pool.submit(account, a, roles) for a, roles in sorted(by_account.items())]
        return [problem for future in futures for problem in future.result()]


def _role_conflict(iam: Any, account_id: str, action: PlanAction) -> list[str]:
    params = action.params
    name = params["role_name"]
    state = read_role_state(iam, name)
    if state is None:
        return []
    found = differences(state, params)
    if not found:
        return []  # identical: adopted
    migration = _migration(params)
    if _ours(state, migration) and state["path"] == params["path"]:
        return []  # an earlier plan of this migration made it: brought to the plan
    return [
        f"account {account_id}: role {name} ({state['arn']}) already exists, was not made by "
        f"this migration (no {MIGRATION_TAG}={migration} tag under {params['path']}) and "
        f"differs from the plan: {'; '.join(found)}. Nothing was changed: the people planned "
        "for it would be allowed to assume it. Rename or delete that role, or make it "
        "identical to the plan to adopt it, then apply again"
    ]


UNREADABLE = "its customer-managed policies could not be read"


def _missing_policies(
    ctx: ExecutionContext, account_id: str, permission_set: str, policies: list[str]
) -> list[str]:
    """Why the account can't take the permission set: missing policies, or the read failed."""
    try:
        missing = missing_customer_policies(ctx.member(account_id), account_id, policies)
    except STOPS_THE_RUN:
        raise
    except Exception as err:
        return [f"{UNREADABLE}: {failure_reason(err)}"]
    return [
        f"customer-managed policy {problem} (needed by {permission_set}): create or restore it "
        "there as planned, then Retry (or re-run inventory and plan)"
        for problem in missing
    ]


def _access(user: User, groups: list[Group]) -> dict[str, Any]:
    """What a user can do, in a form two reads of the same access compare equal in."""
    access = effective_access(user, groups)
    own = {p.arn for p in user.attached_policies}
    return {
        "user id": user.user_id,
        "groups": sorted(user.groups),
        # Its own attachments apart from those through groups: both change what the plan
        # reproduces, and its own are what a disable or delete touches.
        "attached policies": sorted(own),
        "policies through groups": sorted(set(access.managed_policy_arns) - own),
        "inline policies": sorted(
            f"{source}/{p.name}={canonical_json(p.document)}"
            for source, p in access.inline_policies
        ),
        "permissions boundary": access.boundary_arn,
    }


def _difference(name: str, planned: dict[str, Any], live: dict[str, Any]) -> list[str]:
    changes = []
    for key, was in planned.items():
        now = live[key]
        if was == now:
            continue
        if isinstance(was, list):
            added = sorted(set(now) - set(was))
            removed = sorted(set(was) - set(now))
            # Inline documents are long: name the policy, not its text.
            show = (lambda v: v.split("=", 1)[0]) if key == "inline policies" else str
            parts = [f"+{show(v)}" for v in added] + [f"-{show(v)}" for v in removed]
            changes.append(f"{key} {' '.join(parts)}")
        elif key == "user id":
            changes.append(f"re-created (user id {was} is now {now})")
        else:
            changes.append(f"{key} {was} -> {now}")
    return [f"user {name}: {'; '.join(changes)}"] if changes else []


def live_access_changes(
    session: Any, planned: AccountInventory, user_names: list[str]
) -> list[str]:
    """Re-read an account live and name each planned user whose access changed since the plan.

    The plan's snapshot is not the world: someone may have attached a policy, deleted or
    re-created a user after the change board approved. Apply calls this before the first
    change in an account (Terraform refreshes before apply for the same reason) and leaves the
    account untouched when anything is named.

    Args:
        session: A session in the member account.
        planned: The account as the plan's inventory snapshot saw it.
        user_names: The users the stage acts for in this account.

    Returns:
        One message per changed or vanished user; empty when the account is as planned.
    """
    users, groups = read_account_access(session, planned.account.account_id)
    live = {u.name: u for u in users}
    then = {u.name: u for u in planned.users}
    problems = []
    for name in sorted(set(user_names)):
        before = then.get(name)
        if before is None:
            continue  # not in the snapshot: the snapshot-level check reports it
        now = live.get(name)
        if now is None:
            problems.append(f"user {name}: deleted since the plan")
            continue
        problems.extend(_difference(name, _access(before, planned.groups), _access(now, groups)))
    return problems
