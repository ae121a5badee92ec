"""Disabling IAM users reversibly: credentials set Inactive, the quarantine policy attached.

One handler per credential kind that can be set Inactive (``domain.credentials.DISABLEABLE``:
access key, SSH public key, signing certificate, service-specific credential) and one for the
quarantine inline policy, run by the journaled executor. Each records the credential's prior
status before it calls AWS, so an undo restores exactly that: a credential that was already
Inactive is adopted, never turned on by a rollback.
The console password is kept: deleting it is irreversible, and the quarantine's explicit deny
makes it grant nothing (AWS_FACTS, "Reversible ways to disable").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from domain.credentials import DISABLEABLE, CredentialKind
from domain.errors import ActionError
from domain.plan import PlanAction
from domain.policy_documents import canonical_json
from state.journal import JournalEntry
from tasks.aws import error_code, error_message
from tasks.credentials import CALLS
from tasks.handler import Done, ExecutionContext, Handler, Live

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    *(kind.list_actions[0] for kind in DISABLEABLE),
    "iam:GetUserPolicy",
)
PERMISSIONS = (
    *(kind.update_action for kind in DISABLEABLE if kind.update_action),
    "iam:PutUserPolicy",
    "iam:DeleteUserPolicy",
)

ACTIVE = "Active"
INACTIVE = "Inactive"

# Endpoints without service-specific credentials (moto) answer one of these.
_NOT_IMPLEMENTED = {"NotImplemented", "InvalidAction", "UnknownOperationException"}


def list_credentials(iam: Any, kind: CredentialKind, user: str) -> dict[str, str] | None:
    """credential id -> status of one kind of a user's credentials; None if the user is gone."""
    try:
        found = CALLS[kind.name].live(iam, user)
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        if error_code(err) in _NOT_IMPLEMENTED:
            return {}
        raise
    except NotImplementedError:  # moto in-process
        return {}
    return {cid: status or "" for cid, status in found.items()}


def unplanned_credentials(iam: Any, user: str, planned: set[str]) -> list[str] | None:
    """Active credentials of a user that the plan does not deactivate (created since the plan).

    Returns:
        One description per such credential; None when the user no longer exists.
    """
    found = []
    for kind in DISABLEABLE:
        live = list_credentials(iam, kind, user)
        if live is None:
            return None
        found.extend(
            f"{kind.noun} {kind.shown(cid)}"
            for cid, status in sorted(live.items())
            if status == ACTIVE and cid not in planned
        )
    return found


class DeactivateCredential:
    """``deactivate-*``: set one credential Inactive; undo sets it back to its prior status."""

    PERMISSIONS: tuple[str, ...] = PERMISSIONS

    def __init__(self, kind: CredentialKind):
        self.kind = kind
        self.param = kind.disable_param or ""
        self.calls = CALLS[kind.name]

    def _status(self, ctx: ExecutionContext, action: PlanAction) -> str | None:
        account_id = action.account_id or ""
        live = list_credentials(ctx.iam(account_id), self.kind, action.params["user"])
        if live is None:
            return None
        return live.get(action.params[self.param])

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        status = self._status(ctx, action)
        if status is None:
            # Gone (or its user is): nothing to disable, nothing to restore.
            return Live(exists=True, detail={"status": None, "gone": True})
        # Already Inactive counts as "there before us": adopted, never re-activated by undo.
        return Live(exists=status == INACTIVE, detail={"status": status})

    def _update(self, ctx: ExecutionContext, account_id: str, user: str, cid: str, status: str):
        self.calls.set_status(ctx.iam(account_id), user, cid, status)

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        user, cid = action.params["user"], action.params[self.param]
        undo = {"user": user, self.param: cid, "status": ACTIVE}
        outcome = {"prior_status": ACTIVE, "status": INACTIVE, "undo": undo}
        if live.exists:
            # Our own earlier attempt set it Inactive and then died: nothing to send again.
            return Done(outcome={**outcome, "resumed": True}, undo=undo)
        # The prior status is on record before the call, so a crash after it can be undone.
        progress(outcome)
        try:
            self._update(ctx, action.account_id or "", user, cid, INACTIVE)
        except ClientError as err:
            raise ActionError(
                action.id,
                f"{self.calls.update_operation} {self.kind.shown(cid)} of {user}: "
                f"{error_message(err)}",
            ) from err
        log.info("%s %s of %s set Inactive", self.kind.noun, self.kind.shown(cid), user)
        return Done(outcome=outcome, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        user, cid = recorded.get("user"), recorded.get(self.param)
        status = recorded.get("status", ACTIVE)
        if not user or not cid:
            return {"skipped": "nothing recorded to restore"}
        try:
            self._update(ctx, entry.account_id or "", user, cid, status)
        except ClientError as err:
            if error_code(err) == "NoSuchEntity":
                return {"skipped": f"{self.kind.noun} {self.kind.shown(cid)} is gone"}
            raise ActionError(
                entry.action_id, f"restore {self.kind.noun} of {user}: {error_message(err)}"
            ) from err
        return {"status": status}


class AttachQuarantinePolicy:
    """``attach-quarantine-policy``: the deny-all inline policy; undo deletes it."""

    PERMISSIONS: tuple[str, ...] = ("iam:PutUserPolicy", "iam:DeleteUserPolicy")

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        iam = ctx.iam(action.account_id or "")
        try:
            found = iam.get_user_policy(
                UserName=action.params["user"], PolicyName=action.params["policy_name"]
            )
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise
            return Live(exists=False)
        document = found["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        differs = canonical_json(document) != canonical_json(action.params["policy"])
        return Live(
            exists=True,
            difference="an inline policy of that name with another document" if differs else None,
            detail={"policy_name": action.params["policy_name"]},
        )

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        user, name = action.params["user"], action.params["policy_name"]
        undo = {"user": user, "policy_name": name}
        if not live.exists:
            progress({"undo": undo})
            try:
                ctx.iam(action.account_id or "").put_user_policy(
                    UserName=user,
                    PolicyName=name,
                    PolicyDocument=json.dumps(action.params["policy"]),
                )
            except ClientError as err:
                raise ActionError(
                    action.id, f"PutUserPolicy {name} on {user}: {error_message(err)}"
                ) from err
            log.info("quarantine policy attached to %s", user)
        return Done(outcome={"attached": name}, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        user, name = recorded.get("user"), recorded.get("policy_name")
        if not user or not name:
            return {"skipped": "nothing recorded to remove"}
        try:
            ctx.iam(entry.account_id or "").delete_user_policy(UserName=user, PolicyName=name)
        except ClientError as err:
            if error_code(err) != "NoSuchEntity":
                raise ActionError(
                    entry.action_id, f"DeleteUserPolicy {name} of {user}: {error_message(err)}"
                ) from err
        return {"removed": name}


HANDLERS: dict[str, Handler] = {
    **{kind.disable_action or "": DeactivateCredential(kind) for kind in DISABLEABLE},
    "attach-quarantine-policy": AttachQuarantinePolicy(),
}
