"""What each stage re-proves live before it changes anything: declared here, for every stage.

A journal row says what was done, never that it is still safe to do. Before a user's first
change in a run — a first run, ``iamc resume`` and a Prefect Retry alike — the stage's checks
read that user live and refuse them, with the reasons, unless every check passes; the other
users go on. Each stage declares its own (``StageDefinition.preconditions``, in ``stages/``);
a stage that declares none can't run (:func:`preconditions_of`), so a new stage cannot forget
its checks. The identity checks every stage that takes access away starts with are here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from domain.classification import CENTRAL_ACCOUNT_REASON
from domain.errors import ApplyRefused, IamcError, PlanError
from domain.plan import PlanAction
from domain.stages import stage
from engine.stage_run import StageRun, UserWork
from state.journal import DONE_STATUSES
from tasks.handler import VERIFIED_USERS

if TYPE_CHECKING:
    from tasks.iam_user_live import LiveUser


@dataclass(frozen=True)
class UserCheck:
    """One live precondition: its name, what it proves (for people), and the check.

    ``check`` returns why the user may not be changed now (empty: it may). A failed ``gate``
    stops the checks after it: when the name is now another user's, or the user is protected,
    nothing else about it matters (and nothing more is read).
    """

    name: str
    proves: str
    check: Callable[[StageRun, UserWork, LiveUser], list[str]]
    gate: bool = False


@dataclass(frozen=True)
class StagePreconditions:
    """A stage's live preconditions: per account (before its first change there) and per user."""

    per_account: tuple[str, ...]
    per_user: tuple[UserCheck, ...]
    # A user already gone passes (delete: its steps find nothing to remove); else refused.
    gone_is_done: bool = False


# -- the checks ----------------------------------------------------------------------------------


def same_user(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
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


def not_protected(rt: StageRun, work: UserWork, live: LiveUser) -> list[str]:
    """Not protected now: neither the live tag nor the current spec's ``protected_users``, nor
    a user of the current spec's central identity account (``[central] account``)."""
    if rt.spec.central_account is not None and work.account_id == rt.spec.central_account:
        return [f"protected: {CENTRAL_ACCOUNT_REASON}; iamc never touches it"]
    tag = rt.spec.protected_tag
    if live.tags.get(tag, "").strip().lower() == "true":
        return [f"protected: tagged {tag}=true now; iamc never touches it"]
    for glob in rt.spec.protected_users:
        if fnmatchcase(work.user.lower(), glob.lower()):
            return [
                f"protected: the spec's protected_users has {glob!r} now; iamc never touches it"
            ]
    return []


IDENTITY = UserCheck(
    "same-user",
    "the unique id is the planned one (not a re-created namesake)",
    same_user,
    gate=True,
)
PROTECTION = UserCheck(
    "not-protected",
    "not protected now (live iamc:protected tag, the current spec's protected_users, "
    "[central] account)",
    not_protected,
    gate=True,
)


def preconditions_of(name: str) -> StagePreconditions:
    """The stage's declared preconditions (``StageDefinition.preconditions``).

    Raises:
        IamcError: The stage declares none (a stage must, before it can run).
    """
    try:
        found = stage(name).preconditions
    except PlanError:  # not a registered stage: it declares nothing either
        found = None
    if found is None:
        raise IamcError(f"stage {name!r} declares no live preconditions: it can't run")
    return found


def pending(rt: StageRun, actions: list[PlanAction]) -> list[PlanAction]:
    """The actions the journal does not have as done (what this run may still change)."""
    return [
        a
        for a in actions
        if (entry := rt.store.journal.journal_entry(rt.plan_id, a.id)) is None
        or entry.status not in DONE_STATUSES
    ]


def user_refusals(rt: StageRun, stage: str, work: UserWork) -> list[str]:
    """Why this user may not be changed now, read live; empty when every check passes.

    The identity checks come first: when the name is now another user's, nothing else about
    it matters. A user already gone is refused by ``disable`` and left to ``delete``'s steps,
    which find nothing to remove (they never act on another user: a namesake has a user id).
    """
    # The IAM adapter (boto3) is imported when a stage runs, not when it is declared: the
    # read-only commands that list the stages import no AWS SDK.
    from tasks.iam_user_live import read_live_user

    checks = preconditions_of(stage).per_user
    live = read_live_user(rt.ctx.iam(work.account_id), work.user)
    if live is None:
        if preconditions_of(stage).gone_is_done:
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


def refuse_if_stale(rt: StageRun, actions: list[PlanAction]) -> None:
    """Before a stage that re-reads no user one by one: the plan's targets still match AWS.

    Raises:
        ApplyRefused: Targets changed since the plan was computed; nothing was changed.
    """
    from engine.preflight import stale_targets  # IAM and identity-store reads: boto3

    ctx = rt.ctx
    stale = stale_targets(
        rt.store,
        rt.migration_id,
        rt.plan,
        ctx.management,
        # central-roles has no Identity Center: its principals are the central account's.
        ctx.instance.identity_store_id if ctx.instance is not None else "",
        frozenset(a.stage for a in actions),
        member=ctx.member,
    )
    if stale:
        raise ApplyRefused(
            f"plan {rt.plan_id} is stale: {len(stale)} target(s) changed since it was "
            "computed; nothing was changed. Re-run inventory, map and plan, then approve "
            "again:\n  " + "\n  ".join(stale)
        )
