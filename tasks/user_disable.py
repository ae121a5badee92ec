"""Disabling IAM users reversibly: credentials set Inactive, the quarantine policy attached.

One handler per credential type (access key, SSH public key, signing certificate,
service-specific credential) and one for the quarantine inline policy, run by the journaled
executor. Each records the credential's prior status before it calls AWS, so an undo restores
exactly that: a credential that was already Inactive is adopted, never turned on by a rollback.
The console password is kept: deleting it is irreversible, and the quarantine's explicit deny
makes it grant nothing (AWS_FACTS, "Reversible ways to disable").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from domain.errors import ActionError
from domain.keys import mask_key_id
from domain.plan import PlanAction
from domain.policy_documents import canonical_json
from state.journal import JournalEntry
from tasks.aws import error_code, error_message
from tasks.handler import Done, ExecutionContext, Handler, Live

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:ListAccessKeys",
    "iam:ListSSHPublicKeys",
    "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials",
    "iam:GetUserPolicy",
)
PERMISSIONS = (
    "iam:UpdateAccessKey",
    "iam:UpdateSSHPublicKey",
    "iam:UpdateSigningCertificate",
    "iam:UpdateServiceSpecificCredential",
    "iam:PutUserPolicy",
    "iam:DeleteUserPolicy",
)

ACTIVE = "Active"
INACTIVE = "Inactive"


@dataclass(frozen=True)
class CredentialType:
    """How one kind of IAM user credential is listed and switched on or off."""

    kind: str  # the plan action kind
    noun: str  # for people
    param: str  # the plan action's params key holding the credential id
    list_operation: str
    list_key: str
    id_field: str
    update_operation: str
    update_id_arg: str
    paginated: bool = True

    def shown(self, credential_id: str) -> str:
        return mask_key_id(credential_id) if self.param == "access_key_id" else credential_id


ACCESS_KEY = CredentialType(
    "deactivate-access-key",
    "access key",
    "access_key_id",
    "list_access_keys",
    "AccessKeyMetadata",
    "AccessKeyId",
    "update_access_key",
    "AccessKeyId",
)
SSH_PUBLIC_KEY = CredentialType(
    "deactivate-ssh-public-key",
    "SSH public key",
    "ssh_public_key_id",
    "list_ssh_public_keys",
    "SSHPublicKeys",
    "SSHPublicKeyId",
    "update_ssh_public_key",
    "SSHPublicKeyId",
)
SIGNING_CERTIFICATE = CredentialType(
    "deactivate-signing-certificate",
    "signing certificate",
    "certificate_id",
    "list_signing_certificates",
    "Certificates",
    "CertificateId",
    "update_signing_certificate",
    "CertificateId",
)
# ListServiceSpecificCredentials returns everything at once: it has no paginator.
SERVICE_CREDENTIAL = CredentialType(
    "deactivate-service-specific-credential",
    "service-specific credential",
    "credential_id",
    "list_service_specific_credentials",
    "ServiceSpecificCredentials",
    "ServiceSpecificCredentialId",
    "update_service_specific_credential",
    "ServiceSpecificCredentialId",
    paginated=False,
)
CREDENTIAL_TYPES = (ACCESS_KEY, SSH_PUBLIC_KEY, SIGNING_CERTIFICATE, SERVICE_CREDENTIAL)

# Endpoints without service-specific credentials (moto) answer one of these.
_NOT_IMPLEMENTED = {"NotImplemented", "InvalidAction", "UnknownOperationException"}


def list_credentials(iam: Any, kind: CredentialType, user: str) -> dict[str, str] | None:
    """credential id -> status of one kind of a user's credentials; None if the user is gone."""
    try:
        if kind.paginated:
            items: Iterator[dict[str, Any]] = (
                item
                for page in iam.get_paginator(kind.list_operation).paginate(UserName=user)
                for item in page.get(kind.list_key, [])
            )
            found = {item[kind.id_field]: item["Status"] for item in items}
        else:
            answer = getattr(iam, kind.list_operation)(UserName=user)
            found = {item[kind.id_field]: item["Status"] for item in answer.get(kind.list_key, [])}
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        if error_code(err) in _NOT_IMPLEMENTED:
            return {}
        raise
    except NotImplementedError:  # moto in-process
        return {}
    return found


def unplanned_credentials(iam: Any, user: str, planned: set[str]) -> list[str] | None:
    """Active credentials of a user that the plan does not deactivate (created since the plan).

    Returns:
        One description per such credential; None when the user no longer exists.
    """
    found = []
    for kind in CREDENTIAL_TYPES:
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

    def __init__(self, kind: CredentialType):
        self.kind = kind

    def _status(self, ctx: ExecutionContext, action: PlanAction) -> str | None:
        account_id = action.account_id or ""
        live = list_credentials(ctx.iam(account_id), self.kind, action.params["user"])
        if live is None:
            return None
        return live.get(action.params[self.kind.param])

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        status = self._status(ctx, action)
        if status is None:
            # Gone (or its user is): nothing to disable, nothing to restore.
            return Live(exists=True, detail={"status": None, "gone": True})
        # Already Inactive counts as "there before us": adopted, never re-activated by undo.
        return Live(exists=status == INACTIVE, detail={"status": status})

    def _update(self, ctx: ExecutionContext, account_id: str, user: str, cid: str, status: str):
        iam = ctx.iam(account_id)
        getattr(iam, self.kind.update_operation)(
            UserName=user, **{self.kind.update_id_arg: cid}, Status=status
        )

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Callable[[dict[str, Any]], None],
        prior: JournalEntry | None,
    ) -> Done:
        user, cid = action.params["user"], action.params[self.kind.param]
        undo = {"user": user, self.kind.param: cid, "status": ACTIVE}
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
                f"{self.kind.update_operation} {self.kind.shown(cid)} of {user}: "
                f"{error_message(err)}",
            ) from err
        log.info("%s %s of %s set Inactive", self.kind.noun, self.kind.shown(cid), user)
        return Done(outcome=outcome, undo=undo)

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        recorded = entry.undo or {}
        user, cid = recorded.get("user"), recorded.get(self.kind.param)
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
    **{kind.kind: DeactivateCredential(kind) for kind in CREDENTIAL_TYPES},
    "attach-quarantine-policy": AttachQuarantinePolicy(),
}

# A rollback turns credentials back on first, then lifts the quarantine: the person is
# let back in only when everything they had is there again.
UNDO_ORDER = (*(kind.kind for kind in CREDENTIAL_TYPES), "attach-quarantine-policy")
