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

from domain.errors import ActionError
from domain.keys import mask_key_id
from domain.plan import PlanAction
from domain.teardown import TEARDOWN
from state.journal import JournalEntry
from tasks.aws import error_code, error_message
from tasks.aws import pages as _pages
from tasks.handler import VERIFIED_USERS, Done, ExecutionContext, Handler, Live
from tasks.iam_user_live import read_live_user
from tasks.user_disable import SERVICE_CREDENTIAL, list_credentials

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListMFADevices",
    "iam:ListSSHPublicKeys",
    "iam:GetSSHPublicKey",
    "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials",
    "iam:GetLoginProfile",
)
PERMISSIONS = tuple(action for step in TEARDOWN for action in step.iam_actions)

# IAM answers 409 ConcurrentModification while another change to the user is in flight:
# wait and retry (IAM API reference, common errors).
_RETRIED = frozenset({"ConcurrentModification"})


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
        for name in (
            n
            for page in iam.get_paginator("list_user_policies").paginate(UserName=user_name)
            for n in page.get("PolicyNames", [])
        )
    }
    keys = []
    for key in _pages(iam, "list_access_keys", "AccessKeyMetadata", UserName=user_name):
        used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get(
            "AccessKeyLastUsed", {}
        )
        keys.append(
            {
                "access_key_id": key["AccessKeyId"],
                "status": key["Status"],
                "created": _iso(key.get("CreateDate")),
                "last_used": _iso(used.get("LastUsedDate")),
                "last_used_service": used.get("ServiceName"),
            }
        )
    ssh = []
    for key in _pages(iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=user_name):
        body = iam.get_ssh_public_key(
            UserName=user_name, SSHPublicKeyId=key["SSHPublicKeyId"], Encoding="SSH"
        )["SSHPublicKey"]
        ssh.append(
            {
                "ssh_public_key_id": key["SSHPublicKeyId"],
                "status": key["Status"],
                "uploaded": _iso(key.get("UploadDate")),
                "body": body.get("SSHPublicKeyBody"),
                "fingerprint": body.get("Fingerprint"),
            }
        )
    certificates = [
        {
            "certificate_id": cert["CertificateId"],
            "status": cert["Status"],
            "uploaded": _iso(cert.get("UploadDate")),
            "body": cert.get("CertificateBody"),
        }
        for cert in _pages(iam, "list_signing_certificates", "Certificates", UserName=user_name)
    ]
    service_credentials = _service_credentials(iam, user_name)
    try:
        profile = iam.get_login_profile(UserName=user_name)["LoginProfile"]
        console = {"existed": True, "created": _iso(profile.get("CreateDate"))}
    except ClientError as err:
        if not _missing(err):
            raise
        console = {"existed": False}
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
        "attached_policies": [
            p["PolicyArn"]
            for p in _pages(
                iam, "list_attached_user_policies", "AttachedPolicies", UserName=user_name
            )
        ],
        "groups": [
            g["GroupName"]
            for g in _pages(iam, "list_groups_for_user", "Groups", UserName=user_name)
        ],
        "access_keys": keys,
        "mfa_devices": [
            {"serial": d["SerialNumber"], "enabled": _iso(d.get("EnableDate"))}
            for d in _pages(iam, "list_mfa_devices", "MFADevices", UserName=user_name)
        ],
        "ssh_public_keys": ssh,
        "signing_certificates": certificates,
        "service_specific_credentials": service_credentials,
        "console_password": console,
    }


def _service_credentials(iam: Any, user_name: str) -> list[dict[str, Any]]:
    try:
        listed = iam.list_service_specific_credentials(UserName=user_name)
    except ClientError as err:
        if error_code(err) in ("NotImplemented", "InvalidAction"):
            return []
        raise
    except NotImplementedError:
        return []
    return [
        {
            "credential_id": c["ServiceSpecificCredentialId"],
            "service_name": c.get("ServiceName"),
            "service_user_name": c.get("ServiceUserName"),
            "status": c.get("Status"),
            "created": _iso(c.get("CreateDate")),
        }
        for c in listed.get("ServiceSpecificCredentials", [])
    ]


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
        counts = {
            name: len(snapshot[name])
            for name in (
                "inline_policies",
                "attached_policies",
                "groups",
                "access_keys",
                "mfa_devices",
                "ssh_public_keys",
                "signing_certificates",
                "service_specific_credentials",
            )
        }
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


def _login_profile(iam: Any, user: str) -> list[str]:
    try:
        iam.get_login_profile(UserName=user)
    except ClientError as err:
        if _missing(err):
            return []
        raise
    return ["console password"]


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


def _service_credential_ids(iam: Any, user: str) -> list[str]:
    return sorted(list_credentials(iam, SERVICE_CREDENTIAL, user) or {})


def _remove_mfa(iam: Any, user: str, serial: str) -> None:
    iam.deactivate_mfa_device(UserName=user, SerialNumber=serial)
    # A virtual device's serial is its ARN; it outlives its user unless deleted too.
    if serial.startswith("arn:") and ":mfa/" in serial:
        try:
            iam.delete_virtual_mfa_device(SerialNumber=serial)
        except ClientError as err:
            if not _missing(err):
                raise


# kind -> (list what is live, remove one item). A listing of a user that is gone is empty.
_ROWS: dict[str, tuple[Callable[[Any, str], list[str]], Callable[[Any, str, str], None]]] = {
    "delete-login-profile": (
        _login_profile,
        lambda iam, user, _: iam.delete_login_profile(UserName=user),
    ),
    "delete-access-key": (
        lambda iam, user: [
            k["AccessKeyId"]
            for k in _pages(iam, "list_access_keys", "AccessKeyMetadata", UserName=user)
        ],
        lambda iam, user, item: iam.delete_access_key(UserName=user, AccessKeyId=item),
    ),
    "delete-signing-certificate": (
        lambda iam, user: [
            c["CertificateId"]
            for c in _pages(iam, "list_signing_certificates", "Certificates", UserName=user)
        ],
        lambda iam, user, item: iam.delete_signing_certificate(UserName=user, CertificateId=item),
    ),
    "delete-ssh-public-key": (
        lambda iam, user: [
            k["SSHPublicKeyId"]
            for k in _pages(iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=user)
        ],
        lambda iam, user, item: iam.delete_ssh_public_key(UserName=user, SSHPublicKeyId=item),
    ),
    "delete-service-specific-credential": (
        _service_credential_ids,
        lambda iam, user, item: iam.delete_service_specific_credential(
            UserName=user, ServiceSpecificCredentialId=item
        ),
    ),
    "delete-mfa-device": (
        lambda iam, user: [
            d["SerialNumber"] for d in _pages(iam, "list_mfa_devices", "MFADevices", UserName=user)
        ],
        _remove_mfa,
    ),
    "delete-inline-policy": (
        _user_policy_names,
        lambda iam, user, item: iam.delete_user_policy(UserName=user, PolicyName=item),
    ),
    "detach-managed-policy": (
        lambda iam, user: [
            p["PolicyArn"]
            for p in _pages(iam, "list_attached_user_policies", "AttachedPolicies", UserName=user)
        ],
        lambda iam, user, item: iam.detach_user_policy(UserName=user, PolicyArn=item),
    ),
    "remove-from-group": (
        lambda iam, user: [
            g["GroupName"] for g in _pages(iam, "list_groups_for_user", "Groups", UserName=user)
        ],
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


def _shown(kind: str, item: str) -> str:
    return mask_key_id(item) if kind == "delete-access-key" else item


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
