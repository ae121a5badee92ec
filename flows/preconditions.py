"""What each stage re-proves live before it changes anything: declared here, for every stage.

A journal row says what was done, never that it is still safe to do. Before a user's first
change in a run — a first run, ``iamc resume`` and a Prefect Retry alike — the stage's checks
read that user live and refuse them, with the reasons, unless every check passes; the other
users go on. A stage with no entry in :data:`PRECONDITIONS` can't run (:func:`preconditions_of`),
so a new stage cannot forget its checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from domain.errors import IamcError
from domain.plan import PlanAction, Stage
from flows.retire_delete import delete_preconditions
from state.journal import DONE_STATUSES
from tasks.assignments import verify_assignments
from tasks.iam_user_live import LiveUser, read_live_user
from tasks.identity_store import membership_problems, principal_problems
from tasks.user_disable import unplanned_credentials
from tasks.user_teardown import VERIFIED_USERS

if TYPE_CHECKING:
    from flows.apply import _Runtime
    from flows.retire import UserWork

# Plan params that name a credential a disable action turns off.
CREDENTIAL_PARAMS = ("access_key_id", "ssh_public_key_id", "certificate_id", "credential_id")

_SHARED_LOCK = threading.Lock()


@dataclass(frozen=True)
class UserCheck:
    """One live precondition: its name, what it proves (for people), and the check.

    ``check`` returns why the user may not be changed now (empty: it may). A failed ``gate``
    stops the checks after it: when the name is now another user's, or the user is protected,
    nothing else about it matters (and nothing more is read).
    """

    name: str
    proves: str
    check: Callable[[_Runtime, UserWork, LiveUser], list[str]]
    gate: bool = False


@dataclass(frozen=True)
class StagePreconditions:
    """A stage's live preconditions: per account (before its first change there) and per user."""

    per_account: tuple[str, ...]
    per_user: tuple[UserCheck, ...]


# -- the checks ----------------------------------------------------------------------------------


def same_user(rt: _Runtime, work: UserWork, live: LiveUser) -> list[str]:
    """The user is the one planned: same unique id (a re-created name is another person)."""
    planned = rt.planned_account(work.account_id)
    user = next((u for u in planned.users if u.name == work.user), None) if planned else None
    if user is None:
        return ["not in the inventory the plan was made from: re-run inventory and plan"]
    if live.user_id != user.user_id:
        return [
            f"{work.user} is now another user (unique id {live.user_id}, planned {user.user_id}):"
            " it was deleted and created again since the plan; nothing is done to it. Re-run "
            "inventory and plan"
        ]
    return []


def not_protected(rt: _Runtime, work: UserWork, live: LiveUser) -> list[str]:
    """Not protected now: neither the live tag nor the current spec's ``protected_users``."""
    tag = rt.spec.protected_tag
    if live.tags.get(tag, "").strip().lower() == "true":
        return [f"protected: tagged {tag}=true now; iamc never touches it"]
    for glob in rt.spec.protected_users:
        if fnmatchcase(work.user.lower(), glob.lower()):
            return [
                f"protected: the spec's protected_users has {glob!r} now; iamc never touches it"
            ]
    return []


def no_unplanned_credentials(rt: _Runtime, work: UserWork, live: LiveUser) -> list[str]:
    """No active credential the plan does not turn off (disabling part would look done)."""
    planned = {
        action.params[name]
        for action in work.actions
        for name in CREDENTIAL_PARAMS
        if name in action.params
    }
    unplanned = unplanned_credentials(rt.ctx.iam(work.account_id), work.user, planned)
    if unplanned is None:
        return ["the user no longer exists; re-run inventory and plan"]
    if unplanned:
        return [
            f"active credential(s) created since the plan: {', '.join(unplanned)}; "
            "re-run inventory and plan"
        ]
    return []


def new_access_in_place(rt: _Runtime, work: UserWork, live: LiveUser) -> list[str]:
    """The person's planned Identity Center access exists now: assignments and principals."""
    quarantine = next((a for a in work.actions if a.kind == "attach-quarantine-policy"), None)
    if quarantine is None:
        return []
    assignments = [
        action
        for action_id in quarantine.depends_on
        if (action := rt.action(action_id)) is not None and action.kind == "create-assignment"
    ]
    if not assignments:
        return []  # retired, not migrated: the plan gives this user no new access
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


def _principal_problems(rt: _Runtime, principals: list[tuple[str, str, str]]) -> list[str]:
    """principal_problems, read once per principal and run (many users share a group)."""
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


def ready_for_deletion(rt: _Runtime, work: UserWork, live: LiveUser) -> list[str]:
    """Disabled by this migration at least ``bake_days`` ago and not brought back since, no use
    since (CloudTrail, last-used), no active credential, quarantine unchanged, and no resource
    policy anywhere in scope naming it."""
    return delete_preconditions(rt, work, live)


IDENTITY = UserCheck(
    "same-user",
    "the unique id is the planned one (not a re-created namesake)",
    same_user,
    gate=True,
)
PROTECTION = UserCheck(
    "not-protected",
    "not protected now (live iamc:protected tag, the current spec's protected_users)",
    not_protected,
    gate=True,
)

PRECONDITIONS: dict[str, StagePreconditions] = {
    Stage.PROVISION: StagePreconditions(
        per_account=(
            "the account's IAM users as the plan saw them (access unchanged since the plan)",
            "the planned identity-store principals and customer-managed policies exist",
        ),
        per_user=(),
    ),
    Stage.DISABLE: StagePreconditions(
        per_account=(),
        per_user=(
            IDENTITY,
            PROTECTION,
            UserCheck(
                "no-unplanned-credentials",
                "no active credential created since the plan",
                no_unplanned_credentials,
                gate=True,
            ),
            UserCheck(
                "new-access-in-place",
                "the person's planned assignments and identity-store user (and groups) exist now",
                new_access_in_place,
            ),
        ),
    ),
    Stage.DELETE: StagePreconditions(
        per_account=(),
        per_user=(
            IDENTITY,
            PROTECTION,
            UserCheck(
                "ready-for-deletion",
                "disabled by this migration >= bake_days ago and not rolled back, no use since, "
                "no active credential, quarantine unchanged, no resource policy naming it",
                ready_for_deletion,
            ),
        ),
    ),
}


def preconditions_of(stage: str) -> StagePreconditions:
    """The stage's declared preconditions.

    Raises:
        IamcError: The stage declares none (a stage must, before it can run).
    """
    found = PRECONDITIONS.get(stage)
    if found is None:
        raise IamcError(f"stage {stage!r} declares no live preconditions: it can't run")
    return found


def pending(rt: _Runtime, actions: list[PlanAction]) -> list[PlanAction]:
    """The actions the journal does not have as done (what this run may still change)."""
    return [
        a
        for a in actions
        if (entry := rt.store.journal.journal_entry(rt.plan_id, a.id)) is None
        or entry.status not in DONE_STATUSES
    ]


def user_refusals(rt: _Runtime, stage: str, work: UserWork) -> list[str]:
    """Why this user may not be changed now, read live; empty when every check passes.

    The identity checks come first: when the name is now another user's, nothing else about
    it matters. A user already gone is refused by ``disable`` and left to ``delete``'s steps,
    which find nothing to remove (they never act on another user: a namesake has a user id).
    """
    checks = preconditions_of(stage).per_user
    live = read_live_user(rt.ctx.iam(work.account_id), work.user)
    if live is None:
        if stage == Stage.DELETE:
            return []
        return ["the user no longer exists; re-run inventory and plan"]
    problems: list[str] = []
    for check in checks:
        found = check.check(rt, work, live)
        problems.extend(found)
        if found and check.gate:
            break
    if not problems:
        # What the teardown steps check again before each removal (tasks.user_teardown).
        verified = rt.ctx.shared.setdefault(VERIFIED_USERS, {})
        verified[(work.account_id, work.user)] = live.user_id
    return problems
