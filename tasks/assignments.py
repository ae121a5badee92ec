"""Account assignments: give a permission set to a user or group in an account, and verify it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from domain.errors import ActionError
from domain.plan import PlanAction
from state.journal import JournalEntry
from tasks.aws import pages as _pages
from tasks.handler import Done, ExecutionContext, Live
from tasks.permission_sets import permission_set_arn
from tasks.sso_requests import (
    CREATE_ASSIGNMENT,
    DELETE_ASSIGNMENT,
    IN_PROGRESS,
    action_errors,
    request_and_wait,
)

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "sso:ListAccountAssignments",
    "sso:DescribeAccountAssignmentCreationStatus",
    "sso:DescribeAccountAssignmentDeletionStatus",
    "sso:ListAccountAssignmentCreationStatus",
)
PERMISSIONS = ("sso:CreateAccountAssignment", "sso:DeleteAccountAssignment")


def list_assignments(ctx: ExecutionContext, account_id: str, ps_arn: str) -> set[tuple[str, str]]:
    """(principal type, principal id) of every assignment of a permission set in an account."""
    return {
        (a["PrincipalType"], a["PrincipalId"])
        for a in _pages(
            ctx.sso(),
            "list_account_assignments",
            "AccountAssignments",
            InstanceArn=ctx.instance.instance_arn,
            AccountId=account_id,
            PermissionSetArn=ps_arn,
        )
    }


def assignments_of(
    ctx: ExecutionContext, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Every assignment of each (account id, permission set ARN), listed once per pair.

    The drift read and the export ask about many assignments of the same set in the same
    account; each listing is a full pagination, so they ask once per pair and look up.

    Returns:
        (account id, set ARN) -> (principal type, principal id) of its assignments.
    """
    return {
        (account_id, arn): list_assignments(ctx, account_id, arn)
        for account_id, arn in sorted(set(pairs))
    }


def _pending_creation(ctx: ExecutionContext, key: dict[str, str]) -> str | None:
    """The request id of an IN_PROGRESS creation of this very assignment, if any.

    A process that died after CreateAccountAssignment but before recording its request id
    leaves one; waiting on it is right, sending another would conflict.
    """
    sso, instance = ctx.sso(), ctx.instance.instance_arn
    for status in _pages(
        sso,
        "list_account_assignment_creation_status",
        "AccountAssignmentsCreationStatus",
        InstanceArn=instance,
        Filter={"Status": IN_PROGRESS},
    ):
        described = CREATE_ASSIGNMENT.status(sso, instance, status["RequestId"])
        if all(described.get(k) == v for k, v in key.items()):
            return status["RequestId"]
    return None


class CreateAssignment:
    """``create-assignment``: one account assignment, created and polled to SUCCEEDED."""

    PERMISSIONS = PERMISSIONS

    @staticmethod
    def _key(ctx: ExecutionContext, action: PlanAction) -> dict[str, str] | None:
        ps_arn = permission_set_arn(ctx, action.params["permission_set_name"])
        if ps_arn is None:
            return None
        return {
            "TargetId": action.params["account_id"],
            "PermissionSetArn": ps_arn,
            "PrincipalType": action.params["principal_type"],
            "PrincipalId": action.params["principal_id"],
        }

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        key = self._key(ctx, action)
        if key is None:
            return Live(exists=False)
        found = ctx.assignments_of(
            key["TargetId"],
            key["PermissionSetArn"],
            lambda: list_assignments(ctx, key["TargetId"], key["PermissionSetArn"]),
        )
        exists = (key["PrincipalType"], key["PrincipalId"]) in found
        # Same account, set and principal is the same assignment: it can't differ.
        return Live(exists=exists, detail={"permission_set_arn": key["PermissionSetArn"]})

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        key = self._key(ctx, action)
        if key is None:
            raise ActionError(
                action.id, f"permission set {action.params['permission_set_name']} does not exist"
            )
        undo = {"instance_arn": ctx.instance.instance_arn, **key}
        if live.exists:  # our own earlier attempt got there (resume after a crash)
            return Done(outcome={"existing": True}, undo=undo)
        with ctx.outstanding:  # at most N creations outstanding across the instance
            with action_errors(action.id):
                earlier = self._request_of_earlier_attempt(ctx, prior, key)
            request_id = request_and_wait(
                ctx.sso(),
                ctx.instance.instance_arn,
                CREATE_ASSIGNMENT,
                ctx.poll,
                action.id,
                f"assignment {action.target} in account {key['TargetId']}",
                sent=lambda request_id: progress({"request_id": request_id, "undo": undo}),
                resume=earlier,
                TargetType="AWS_ACCOUNT",
                **key,
            )
        ctx.remember_assignment(
            key["TargetId"],
            key["PermissionSetArn"],
            (key["PrincipalType"], key["PrincipalId"]),
            present=True,
        )
        return Done(outcome={"request_id": request_id}, undo=undo)

    @staticmethod
    def _request_of_earlier_attempt(
        ctx: ExecutionContext, prior: JournalEntry | None, key: dict[str, str]
    ) -> str | None:
        if prior is None or prior.intent.get("existed_before") is not False:
            return None
        recorded = (prior.outcome or {}).get("request_id")
        if recorded:
            status = CREATE_ASSIGNMENT.status(ctx.sso(), ctx.instance.instance_arn, recorded)
            return recorded if status.get("Status") == IN_PROGRESS else None
        return _pending_creation(ctx, key)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = dict(entry.undo or {})
        if not recorded.get("PermissionSetArn"):
            # Died between the create call and recording it: derive the key from the intent.
            params = (entry.intent.get("action") or {}).get("params") or {}
            ps_arn = permission_set_arn(ctx, params.get("permission_set_name", ""))
            if ps_arn is None:
                return {"deleted": None, "note": "never created"}
            recorded = {
                "TargetId": params["account_id"],
                "PermissionSetArn": ps_arn,
                "PrincipalType": params["principal_type"],
                "PrincipalId": params["principal_id"],
            }
        instance = recorded.pop("instance_arn", ctx.instance.instance_arn)
        principal = (recorded["PrincipalType"], recorded["PrincipalId"])
        account_id, ps_arn = recorded["TargetId"], recorded["PermissionSetArn"]
        with action_errors(entry.action_id):
            # Listed once per (account, set) and run, as the apply's probes list them: the
            # rows of one pair are undone together, and each listing costs a call of the
            # sso-admin rate they share. A resume lists afresh.
            present = ctx.assignments_of(
                account_id, ps_arn, lambda: list_assignments(ctx, account_id, ps_arn)
            )
            if principal not in present:
                return {"deleted": None, "note": "already gone"}
        with ctx.outstanding:
            request_id = request_and_wait(
                ctx.sso(),
                instance,
                DELETE_ASSIGNMENT,
                ctx.poll,
                entry.action_id,
                "deleting the assignment",
                TargetType="AWS_ACCOUNT",
                **recorded,
            )
        ctx.remember_assignment(
            recorded["TargetId"], recorded["PermissionSetArn"], principal, present=False
        )
        return {"deleted": request_id}


def verify_assignments(ctx: ExecutionContext, actions: list[PlanAction]) -> list[str]:
    """Check that each planned assignment exists, from what this run read of AWS.

    An (account, permission set) pair this run has read is answered from that reading: its
    ListAccountAssignments (or ListPermissionSetsProvisionedToAccount saying the set was not
    there), kept current with the creations AWS reported SUCCEEDED to this run
    (DescribeAccountAssignmentCreationStatus is the API's own confirmation of a creation,
    API_DescribeAccountAssignmentCreationStatus). A pair it has not read (its assignments
    were done by an earlier run, resumed) is listed now. Listing every pair again would cost
    one ListAccountAssignments per pair of the sso-admin rate all accounts share, to re-learn
    what AWS has just answered.

    Returns:
        One message per planned assignment that is missing.
    """
    missing = []
    for action in actions:
        params = action.params
        ps_arn = permission_set_arn(ctx, params["permission_set_name"])
        if ps_arn is None:
            missing.append(f"{action.target} in {params['account_id']}: permission set missing")
            continue
        account_id = params["account_id"]
        found = ctx.assignments_of(
            account_id, ps_arn, lambda a=account_id, p=ps_arn: list_assignments(ctx, a, p)
        )
        if (params["principal_type"], params["principal_id"]) not in found:
            missing.append(f"{action.target} in {account_id}: not assigned")
    return missing
