"""The disable stage: quarantine each user and set its active credentials Inactive (reversible).

Before a user's first change in every run it re-proves, live, that the user is the planned one,
not protected, has no credential created since the plan, that the person's new Identity
Center access is in place, and, for a workload user replaced with a role, that its owner has
switched: keys quiet for ``inactive_days`` or the role used since (``PRECONDITIONS``). A
rollback turns the credentials back to their prior status and lifts the quarantine, also for
one user. Approved with ``all``.

The AWS adapters are imported inside the functions that run the stage: listing the stages
imports no AWS SDK (``tests/iamc/test_read_only_imports.py``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from domain.central_roles import CENTRAL_ACCESS_KINDS
from domain.central_spec import IAM_USERS, Central
from domain.credentials import DISABLEABLE, disable_items
from domain.plan import Outcome, PlanAction, Stage
from domain.planning import PlanInputs
from domain.records import User
from domain.stages import WITH_ALL, StageDefinition, register
from domain.teardown import QUARANTINE_POLICY, QUARANTINE_POLICY_NAME
from domain.workload_cutover import cutover_inactive_days, cutover_refusals
from domain.workloads import CREATE_WORKLOAD_ROLE, replacement_role_name
from engine.preconditions import (
    IDENTITY,
    PROTECTION,
    StagePreconditions,
    UserCheck,
    refuse_if_stale,
)
from engine.stage_run import AccountReport, StageRun, UserWork
from stages import retire
from stages.retire import retire_account

if TYPE_CHECKING:
    from tasks.handler import Handler
    from tasks.iam_user_live import LiveUser

# Plan params that name a credential a disable action turns off.
CREDENTIAL_PARAMS = tuple(kind.disable_param for kind in DISABLEABLE if kind.disable_param)
# A rollback turns credentials back on first, then lifts the quarantine: the person is let
# back in only when everything they had is there again.
UNDO_ORDER = (
    *(kind.disable_action for kind in DISABLEABLE if kind.disable_action),
    "attach-quarantine-policy",
)

_SHARED_LOCK = threading.Lock()
# The users this stage (and delete after it) takes away: a workload user only once its owner
# has switched to the replacement role (``workload_cut_over``).
DISABLED_OUTCOMES = (Outcome.MIGRATE, Outcome.RETIRE, Outcome.REPLACE_WITH_ROLE)
# The replace stage's action whose role a workload user's disable waits for.


def plan_actions(inputs: PlanInputs) -> list[PlanAction]:
    """For every user the plan migrates, retires or replaces with a role: quarantine, then each
    active credential, after the user's prerequisites (a person's new access, a workload's
    replacement role)."""
    actions: list[PlanAction] = []
    for user_plan in inputs.users:
        if user_plan.outcome not in DISABLED_OUTCOMES:
            continue
        key = (user_plan.account_id, user_plan.user)
        actions.extend(
            _disable_actions(
                user_plan.account_id,
                inputs.records[key],
                user_plan.target_fingerprint,
                inputs.prerequisites.get(key, []),
            )
        )
    return actions


def _disable_actions(
    account_id: str, user: User, fingerprint: str, prerequisites: list[str]
) -> list[PlanAction]:
    """Quarantine the user, then set every active credential Inactive, one action each.

    Only credentials that are Active get an action: one already Inactive stays as it is,
    and a rollback never turns it on. The console password is left alone (irreversible to
    delete); the quarantine's explicit deny makes it grant nothing.
    """
    base = f"disable:{account_id}:{user.name}"
    credentials = [
        # (action kind, params key, id, id as people may see it: a key id masked)
        (kind.disable_action, kind.disable_param, item_id, shown)
        for kind, item_id, shown in disable_items(user)
    ]
    actions = [
        PlanAction(
            # Ids are shown to people (plan files, status): never a whole key id in them.
            id=f"{base}:{kind}:{shown}",
            stage=Stage.DISABLE,
            kind=kind,
            account_id=account_id,
            target=user.name,
            target_fingerprint=fingerprint,
            params={"user": user.name, key: credential_id},
            depends_on=list(prerequisites),
        )
        for kind, key, credential_id, shown in credentials
    ]
    actions.append(
        PlanAction(
            id=f"{base}:attach-quarantine-policy",
            stage=Stage.DISABLE,
            kind="attach-quarantine-policy",
            account_id=account_id,
            target=user.name,
            target_fingerprint=fingerprint,
            params={
                "user": user.name,
                "policy_name": QUARANTINE_POLICY_NAME,
                "policy": QUARANTINE_POLICY,
            },
            depends_on=list(prerequisites),
        )
    )
    return actions


# -- live preconditions --------------------------------------------------------------------------


def no_unplanned_credentials(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
    """No active credential the plan does not turn off (disabling part would look done)."""
    planned = {
        action.params[name]
        for action in work.actions
        for name in CREDENTIAL_PARAMS
        if name in action.params
    }
    from tasks.user_disable import unplanned_credentials

    unplanned = unplanned_credentials(rt.ctx.iam(work.account_id), work.user, planned)
    if unplanned is None:
        return ["the user no longer exists; re-run inventory and plan"]
    if unplanned:
        return [
            f"active credential(s) created since the plan: {', '.join(unplanned)}; "
            "re-run inventory and plan"
        ]
    return []


def new_access_in_place(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
    """The person's planned Identity Center access exists now: assignments and principals."""
    from tasks.assignments import verify_assignments
    from tasks.identity_store import membership_problems

    quarantine = next((a for a in work.actions if a.kind == "attach-quarantine-policy"), None)
    if quarantine is None:
        return []
    assignments = [
        action
        for action_id in quarantine.depends_on
        if (action := rt.action(action_id)) is not None and action.kind == "create-assignment"
    ]
    if not assignments:
        # The central-roles target: the member roles, and the central account's side.
        return _central_access_in_place(rt, work, quarantine)
    problems = [f"new access missing: {m}" for m in verify_assignments(rt.ctx, assignments)]
    principals = sorted(
        {
            (a.params["principal_type"], a.params["principal_id"], a.params["principal_name"])
            for a in assignments
        }
    )
    problems.extend(f"new access missing: {p}" for p in _principal_problems(rt, principals))
    person = rt.user_plan(work.account_id, work.user)
    groups = [p[1] for p in principals if p[0] == "GROUP"]
    if person is not None and person.identity and groups:
        problems.extend(
            f"new access missing: {p}"
            for p in membership_problems(
                rt.ctx.management, rt.ctx.instance.identity_store_id, person.identity, groups
            )
        )
    if problems:
        problems.append(
            "disabling would lock this person out: provision again (iamc apply --stage "
            "provision, or its resume) and check the identity store, then resume this run"
        )
    return problems


def _central_access_in_place(rt: StageRun, work: UserWork, quarantine: PlanAction) -> list[str]:
    """The person's planned central-roles access exists now: each member role, trusting as
    planned (the person among its principals), the central policy allowing the switch, the
    person's group membership, and that they can sign in to switch: an MFA device (people as
    IAM users; the member roles' trust requires MFA) or their federated role. Each read once
    per run (many people share a role)."""
    from tasks.central_access import central_access_problems
    from tasks.member_roles import verify_member_roles

    needed = [
        action
        for action_id in quarantine.depends_on
        if (action := rt.action(action_id)) is not None and action.kind in CENTRAL_ACCESS_KINDS
    ]
    if not needed:
        return []  # retired, not migrated: the plan gives this user no new access
    problems: list[str] = []
    for action in needed:
        with _SHARED_LOCK:
            cache: dict[str, list[str]] = rt.ctx.shared.setdefault("central-access", {})
            found = cache.get(action.id)
        if found is None:
            found = (
                verify_member_roles(rt.ctx, [action])
                if action.kind == "create-member-role"
                else central_access_problems(rt.ctx, [action])
            )
            with _SHARED_LOCK:
                cache[action.id] = found
        problems.extend(f"new access missing: {p}" for p in found)
    if problems:
        problems.append(
            "disabling would lock this person out: put the planned access back (iamc verify "
            "PLAN_ID says what differs and how; a provision not yet finished: its resume), then "
            "resume this run"
        )
    person = rt.user_plan(work.account_id, work.user)
    if person is not None and person.identity:
        problems.extend(_central_sign_in_problems(rt, person.identity))
    return problems


def _central_sign_in_problems(rt: StageRun, identity: str) -> list[str]:
    """The person can sign in to the central account to switch: as an IAM user, with an MFA
    device (the member roles' trust requires ``aws:MultiFactorAuthPresent``); through SAML,
    their federated role still exists. Read once per person and run."""
    from tasks.verify_central import central_role_exists, mfa_device_count, no_mfa_device

    central = Central.model_validate(rt.plan.settings["central"])
    with _SHARED_LOCK:
        cache: dict[str, list[str]] = rt.ctx.shared.setdefault("central-sign-in", {})
        found = cache.get(identity)
    if found is not None:
        return found
    iam = rt.ctx.iam(central.account)
    if central.arrive == IAM_USERS:
        count = mfa_device_count(iam, central.account, identity)
        found = (
            [
                f"central user {identity} does not exist in {central.account}: the person "
                "could not sign in to switch; re-create it (or re-map the person and plan "
                "again), then resume this run"
            ]
            if count is None
            else [no_mfa_device(identity, "resume this run")]
            if count == 0
            else []
        )
    else:
        found = (
            []
            if central_role_exists(iam, central.account, identity)
            else [
                f"federated role {identity} does not exist in {central.account}: the person "
                "could not sign in to switch; re-create it (or re-map the person and plan "
                "again), then resume this run"
            ]
        )
    with _SHARED_LOCK:
        cache[identity] = found
    return found


def _replacement_role(rt: StageRun, work: UserWork) -> str:
    """The role the replace stage planned for this workload user (its name by convention when
    the plan names none)."""
    for action in work.actions:
        for action_id in action.depends_on:
            found = rt.action(action_id)
            if found is not None and found.kind == CREATE_WORKLOAD_ROLE:
                return str(found.params.get("role_name") or replacement_role_name(work.user))
    return replacement_role_name(work.user)


def _inactive_days(rt: StageRun) -> int:
    return cutover_inactive_days(rt.plan.settings, rt.spec.decommission.inactive_days)


def workload_cut_over(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
    """A workload user replaced with a role: its keys quiet for ``inactive_days``, or the role
    used after every key's last use (read live, in every run). Other users pass."""
    planned = rt.user_plan(work.account_id, work.user)
    if planned is None or planned.outcome != Outcome.REPLACE_WITH_ROLE:
        return []
    from tasks.workload_use import key_last_uses, role_use

    iam = rt.ctx.iam(work.account_id)
    keys = key_last_uses(iam, work.user)
    if keys is None:
        return ["the user no longer exists; re-run inventory and plan"]
    return cutover_refusals(
        keys,
        role_use(iam, _replacement_role(rt, work)),
        now=rt.clock(),
        inactive_days=_inactive_days(rt),
        hint=f"iamc workloads -c {rt.spec_path}",
    )


def _principal_problems(rt: StageRun, principals: list[tuple[str, str, str]]) -> list[str]:
    """principal_problems, read once per principal and run (many users share a group)."""
    from tasks.identity_store import principal_problems

    with _SHARED_LOCK:
        cache: dict[tuple[str, str, str], list[str]] = rt.ctx.shared.setdefault("principals", {})
        unread = [p for p in principals if p not in cache]
    for principal in unread:
        found = principal_problems(
            rt.ctx.management, rt.ctx.instance.identity_store_id, [principal]
        )
        with _SHARED_LOCK:
            cache[principal] = found
    with _SHARED_LOCK:
        return [m for p in principals for m in cache[p]]


PRECONDITIONS = StagePreconditions(
    per_account=(),
    per_user=(
        IDENTITY,
        PROTECTION,
        UserCheck(
            "workload-cut-over",
            "a workload user replaced with a role: its keys quiet for [decommission] "
            "inactive_days, or its role used after every key's last use",
            workload_cut_over,
            gate=True,
        ),
        UserCheck(
            "no-unplanned-credentials",
            "no active credential created since the plan",
            no_unplanned_credentials,
            gate=True,
        ),
        UserCheck(
            "new-access-in-place",
            "the person's planned assignments and identity-store user (and groups) exist now; "
            "with central-roles, the member roles trusting them, their central access, and "
            "their MFA device (IAM users) or federated role",
            new_access_in_place,
        ),
    ),
)


def handlers() -> dict[str, Handler]:
    """Action kind -> how it is done, checked and undone (the adapters, on first use)."""
    from tasks.user_disable import HANDLERS

    return HANDLERS


def per_account(rt: StageRun, account_id: str, actions: list[PlanAction]) -> AccountReport:
    """One account's users, one at a time each, a few at once (``stages.retire``)."""
    return retire_account(rt, account_id, actions, Stage.DISABLE)


DISABLE = register(
    StageDefinition(
        name=Stage.DISABLE,
        order=2,
        summary="quarantine each user and set its active credentials Inactive (reversible)",
        plan_actions=plan_actions,
        handlers=handlers,
        per_account=per_account,
        # Read when the stage runs: the retire bench sets it to its account count.
        accounts_at_once=lambda: retire.RETIRE_ACCOUNT_CONCURRENCY,
        undo_order=UNDO_ORDER,
        preconditions=PRECONDITIONS,
        before_run=(refuse_if_stale,),
        approval=WITH_ALL,
        takes_access_away=True,
    )
)
