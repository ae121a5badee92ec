"""Deleting IAM users: the snapshot before, then the teardown table in AWS's order.

Each teardown row (``domain.teardown.TEARDOWN``) is one journaled action that removes what is
*live* of its kind, so a replay converges: ``NoSuchEntity`` counts as done, and a step whose
items are already gone is adopted without a call. ``DeleteUser`` answering ``DeleteConflict``
(something appeared since the plan) re-reads the user, removes what is left in the table's
order, and tries once more. Nothing here can be undone: ``iamc restore`` re-creates what AWS
allows from the snapshot.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from domain.credentials import CREDENTIAL_KINDS, CredentialKind
from domain.errors import ActionError
from domain.plan import PlanAction
from domain.teardown import TEARDOWN
from state.journal import JournalEntry
from tasks.aws import error_code, error_message
from tasks.aws import pages as _pages
from tasks.credentials import CALLS
from tasks.handler import VERIFIED_USERS, Done, ExecutionContext, Handler, Live
from tasks.iam_user_live import read_live_user

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    *(a for kind in CREDENTIAL_KINDS for a in (*kind.list_actions, *kind.snapshot_actions)),
)
PERMISSIONS = tuple(action for step in TEARDOWN for action in step.iam_actions)

# IAM answers 409 ConcurrentModification while another change to the user is in flight:
# wait and retry (IAM API reference, common errors).
_RETRIED = frozenset({"ConcurrentModification"})
# Endpoints without service-specific credentials (moto) answer one of these.
_NOT_IMPLEMENTED = frozenset({"NotImplemented", "InvalidAction", "UnknownOperationException"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _document(raw: Any) -> dict[str, Any]:
    # Policy documents arrive URL-encoded JSON unless botocore decoded them (API reference).
    if isinstance(raw, dict):
        return raw
    return json.loads(urllib.parse.unquote(raw))


def _missing(err: ClientError) -> bool:
    return error_code(err) == "NoSuchEntity"


# -- the snapshot --------------------------------------------------------------------------------


def read_user_snapshot(iam: Any, user_name: str) -> dict[str, Any] | None:
    """Everything about a user that a restore can re-create or must name; never a secret.

    Returns:
        The snapshot as JSON data, or None if the user does not exist.
    """
    try:
        user = iam.get_user(UserName=user_name)["User"]
    except ClientError as err:
        if _missing(err):
            return None
        raise
    inline = {
        name: _document(iam.get_user_policy(UserName=user_name, PolicyName=name)["PolicyDocument"])
        for name in _user_policy_names(iam, user_name)
    }
    tags = {
        tag["Key"]: tag["Value"]
        for tag in _pages(iam, "list_user_tags", "Tags", UserName=user_name)
    }
    return {
        "user_name": user["UserName"],
        "user_id": user["UserId"],
        "arn": user["Arn"],
        "path": user.get("Path", "/"),
        "created": _iso(user.get("CreateDate")),
        "tags": tags,
        "permissions_boundary": (user.get("PermissionsBoundary") or {}).get(
            "PermissionsBoundaryArn"
        ),
        "inline_policies": inline,
        "attached_policies": _attached_arns(iam, user_name),
        "groups": _group_names(iam, user_name),
        **{
            kind.snapshot_field: CALLS[kind.name].snapshot(iam, user_name)
            for kind in CREDENTIAL_KINDS
        },
    }


# Snapshot fields whose items SnapshotUser counts (the flag kinds' fields are no list).
_COUNTED = (
    "inline_policies",
    "attached_policies",
    "groups",
    *(kind.snapshot_field for kind in CREDENTIAL_KINDS if not kind.flag),
)


class SnapshotUser:
    """``snapshot-user``: store what the user is, right before its first delete action."""

    PERMISSIONS: tuple[str, ...] = ()

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        # A snapshot is ours to take again on a resume (nothing is deleted before it is done).
        return Live(exists=False)

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        account_id, user = action.account_id or "", action.params["user"]
        try:
            snapshot = read_user_snapshot(ctx.iam(account_id), user)
        except ClientError as err:
            raise ActionError(action.id, f"snapshot of {user}: {error_message(err)}") from err
        if snapshot is None:
            return Done(outcome={"gone": True}, undo=None)
        if ctx.snapshot_sink is None:
            raise ActionError(action.id, "no snapshot store: refusing to delete without one")
        ctx.snapshot_sink(account_id, user, snapshot)
        counts = {name: len(snapshot[name]) for name in _COUNTED}
        return Done(
            outcome={"user_id": snapshot["user_id"], "stored": True, "counts": counts}, undo=None
        )

    def revisit(self, ctx: ExecutionContext, action: PlanAction, entry: JournalEntry) -> None:
        """On a resume, read the user again: a change since the snapshot is stored as a newer
        snapshot before the teardown removes it (the store keeps the older one too).

        A user that is gone, or whose name now belongs to another unique id, is left alone.
        """
        account_id, user = action.account_id or "", action.params["user"]
        taken_of = (entry.outcome or {}).get("user_id")
        if taken_of is None or ctx.snapshot_sink is None:
            return  # the user was already gone when the snapshot was due: nothing to compare
        try:
            snapshot = read_user_snapshot(ctx.iam(account_id), user)
        except ClientError as err:
            raise ActionError(action.id, f"snapshot of {user}: {error_message(err)}") from err
        if snapshot is None or snapshot["user_id"] != taken_of:
            return
        ctx.snapshot_sink(account_id, user, snapshot)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        return {"skipped": "a snapshot changes nothing in AWS"}


# -- teardown rows: list what is live, remove it -------------------------------------------------


def _boundary(iam: Any, user: str) -> list[str]:
    try:
        found = iam.get_user(UserName=user)["User"].get("PermissionsBoundary") or {}
    except ClientError as err:
        if _missing(err):
            return []
        raise
    arn = found.get("PermissionsBoundaryArn")
    return [arn] if arn else []


def _exists(iam: Any, user: str) -> list[str]:
    try:
        iam.get_user(UserName=user)
    except ClientError as err:
        if _missing(err):
            return []
        raise
    return [user]


def _user_policy_names(iam: Any, user: str) -> list[str]:
    return [
        name
        for page in iam.get_paginator("list_user_policies").paginate(UserName=user)
        for name in page.get("PolicyNames", [])
    ]


def _attached_arns(iam: Any, user: str) -> list[str]:
    return [
        p["PolicyArn"]
        for p in _pages(iam, "list_attached_user_policies", "AttachedPolicies", UserName=user)
    ]


def _group_names(iam: Any, user: str) -> list[str]:
    return [g["GroupName"] for g in _pages(iam, "list_groups_for_user", "Groups", UserName=user)]


Lister = Callable[[Any, str], list[str]]
Remover = Callable[[Any, str, str], None]


def _credential_ids(kind: CredentialKind) -> Lister:
    calls = CALLS[kind.name]

    def listed(iam: Any, user: str) -> list[str]:
        try:
            return list(calls.live(iam, user))
        except ClientError as err:
            if calls.may_be_missing and error_code(err) in _NOT_IMPLEMENTED:
                return []
            raise
        except NotImplementedError:  # moto in-process
            if calls.may_be_missing:
                return []
            raise

    return listed


# The AWS calls of each teardown row (domain.teardown.TEARDOWN), by its kind: list what is
# live, remove one item. A listing of a user that is gone is empty. A credential row's calls
# are its kind's (tasks.credentials).
_ROWS: dict[str, tuple[Lister, Remover]] = {
    **{
        step.kind: (_credential_ids(step.credential), CALLS[step.credential.name].remove)
        for step in TEARDOWN
        if step.credential is not None
    },
    "delete-inline-policy": (
        _user_policy_names,
        lambda iam, user, item: iam.delete_user_policy(UserName=user, PolicyName=item),
    ),
    "detach-managed-policy": (
        _attached_arns,
        lambda iam, user, item: iam.detach_user_policy(UserName=user, PolicyArn=item),
    ),
    "remove-from-group": (
        _group_names,
        lambda iam, user, item: iam.remove_user_from_group(UserName=user, GroupName=item),
    ),
    "delete-permissions-boundary": (
        _boundary,
        lambda iam, user, _: iam.delete_user_permissions_boundary(UserName=user),
    ),
    "delete-user": (_exists, lambda iam, user, _: iam.delete_user(UserName=user)),
}


def live_items(iam: Any, kind: str, user: str) -> list[str]:
    """What of one teardown row's kind the user still has (empty when the user is gone)."""
    lister = _ROWS[kind][0]
    try:
        return lister(iam, user)
    except ClientError as err:
        if _missing(err):
            return []
        raise


# teardown kind -> the credential kind it removes, for how its ids are shown.
_CREDENTIAL_OF = {step.kind: step.credential for step in TEARDOWN if step.credential}


def _shown(kind: str, item: str) -> str:
    credential = _CREDENTIAL_OF.get(kind)
    return credential.shown(item) if credential else item


@retry(
    retry=retry_if_exception(
        lambda err: isinstance(err, ClientError) and error_code(err) in _RETRIED
    ),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_attempt(6),
    reraise=True,
)
def _remove(iam: Any, kind: str, user: str, item: str) -> bool:
    """Remove one item; False if it was already gone (NoSuchEntity counts as done)."""
    try:
        _ROWS[kind][1](iam, user, item)
    except ClientError as err:
        if _missing(err):
            return False
        raise
    return True


def finish_what_is_left(iam: Any, user: str) -> list[str]:
    """Remove every dependent of a user that is still there, in the teardown table's order.

    Returns:
        What was removed, as ``kind item`` (access key ids masked).
    """
    removed = []
    for step in TEARDOWN:
        if step.kind == "delete-user":
            continue
        for item in live_items(iam, step.kind, user):
            if _remove(iam, step.kind, user, item):
                removed.append(f"{step.kind} {_shown(step.kind, item)}")
    return removed


def _still_the_verified_user(ctx: ExecutionContext, action: PlanAction) -> None:
    """Refuse a step when the name now belongs to another user than the one the checks proved.

    Teardown acts by name; a user deleted and created again under that name mid-run (another
    person: a new unique id) is never torn down in its place.
    """
    account_id, user = action.account_id or "", action.params["user"]
    expected = ctx.shared.get(VERIFIED_USERS, {}).get((account_id, user))
    if expected is None:
        return
    live = read_live_user(ctx.iam(account_id), user, tags=False)
    if live is not None and live.user_id != expected:
        raise ActionError(
            action.id,
            f"{user} is now another user (unique id {live.user_id}, checked {expected}): "
            "nothing of it is removed",
        )


class TeardownStep:
    """One row of the teardown table: remove what is live of its kind; never undone."""

    PERMISSIONS: tuple[str, ...] = PERMISSIONS

    def __init__(self, kind: str):
        self.kind = kind

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        items = live_items(ctx.iam(action.account_id or ""), self.kind, action.params["user"])
        # Nothing left of this kind: the step's end state already holds (adopted, no call).
        if not items:
            return Live(exists=True, detail={"remaining": []})
        # The items read here are what apply removes, without listing them again (a Live
        # that does not exist is never journaled, so the raw ids stay out of the journal).
        return Live(
            exists=False, detail={"remaining": [_shown(self.kind, i) for i in items]}, items=items
        )

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        iam = ctx.iam(action.account_id or "")
        user = action.params["user"]
        planned = set(action.params.get("items") or [])
        removed: list[str] = []
        unplanned: list[str] = []
        # A step resumed after a crash (live.exists: nothing was left when probed) or a
        # probe that found items: no second listing.
        items = [] if live.exists else (live.items or live_items(iam, self.kind, user))
        if items:
            _still_the_verified_user(ctx, action)
        try:
            for item in items:
                if self.kind == "delete-user":
                    removed.extend(self._delete_user(iam, user, progress))
                    continue
                if _remove(iam, self.kind, user, item):
                    removed.append(_shown(self.kind, item))
                    if item not in planned:
                        unplanned.append(_shown(self.kind, item))
                    progress({"removed": list(removed)})
        except ClientError as err:
            raise ActionError(action.id, f"{self.kind} of {user}: {error_message(err)}") from err
        outcome: dict[str, Any] = {"removed": removed}
        if unplanned:
            outcome["not_in_plan"] = unplanned
        return Done(outcome=outcome, undo=None)

    @staticmethod
    def _delete_user(iam: Any, user: str, progress: Callable[[dict[str, Any]], None]) -> list[str]:
        try:
            _remove(iam, "delete-user", user, user)
            return [user]
        except ClientError as err:
            if error_code(err) != "DeleteConflict":
                raise
        # Something the plan did not know of is still attached: finish it, in AWS's order.
        left = finish_what_is_left(iam, user)
        log.warning("DeleteConflict on %s: removed what was left: %s", user, ", ".join(left))
        progress({"left_over_removed": left})
        _remove(iam, "delete-user", user, user)
        return [*(f"left over: {item}" for item in left), user]

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        raise ActionError(
            entry.action_id,
            "deletion can't be undone; 'iamc restore' re-creates what AWS allows from the snapshot",
        )


HANDLERS: dict[str, Handler] = {
    "snapshot-user": SnapshotUser(),
    **{step.kind: TeardownStep(step.kind) for step in TEARDOWN},
}
