"""Re-creating a deleted (or half-deleted) IAM user from its snapshot, one journaled step each.

A deleted user can't come back as it was: the re-created user gets a new unique id, so
resource policies that named the old one keep a dangling id; access key secrets, the console
password and MFA seeds are gone for good (AWS_FACTS). The steps here re-create the user, its
tags, permissions boundary, inline and attached policies, group memberships, SSH public keys
and signing certificates (as they were when deleted: Inactive); ``cannot_come_back`` names
everything else. A user whose deletion stopped half-way (same unique id) gets back what it
lacks. Access keys are never created.

Each step is a handler of the journaled executor (``engine.executor``): its probe says whether
the snapshot's item is live (adopted: "already there"), its apply adds it and converges when
resumed after a crash, so a restore resumed never sends a creation twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from domain.credentials import (
    ACCESS_KEY,
    CONSOLE_PASSWORD,
    CREDENTIAL_KINDS,
    MFA_DEVICE,
    SIGNING_CERTIFICATE,
    SSH_PUBLIC_KEY,
    CredentialKind,
)
from domain.errors import ActionError
from domain.plan import PlanAction, Stage
from domain.teardown import QUARANTINE_POLICY_NAME
from state.journal import JournalEntry
from tasks.aws import error_code, error_message
from tasks.aws import pages as _pages
from tasks.credentials import CALLS
from tasks.handler import Done, ExecutionContext, Handler, Live
from tasks.iam_user_live import user_record
from tasks.permissions import RESTORE

# A half-deleted user (same unique id) may still hold these: read live before they are named
# as lost. Service-specific credentials are always named (the restore role does not list them).
_READ_LIVE = (CONSOLE_PASSWORD, ACCESS_KEY, MFA_DEVICE)
_BY_BODY_KINDS = tuple(kind for kind in CREDENTIAL_KINDS if kind.restore_kind)

READ_PERMISSIONS = (
    "iam:GetUser",
    "iam:ListUserTags",
    "iam:GetUserPolicy",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    *(a for kind in _BY_BODY_KINDS for a in (kind.list_actions[0], *kind.snapshot_actions)),
    *(kind.list_actions[0] for kind in _READ_LIVE),
)
# Only `iamc restore` re-creates users: its writes go in the restore role's policy, and routine
# sessions are denied the ones no other stage makes (tasks.permissions).
RUNS_AS = RESTORE
PERMISSIONS = (
    "iam:CreateUser",
    "iam:TagUser",
    "iam:PutUserPermissionsBoundary",
    "iam:PutUserPolicy",
    "iam:AttachUserPolicy",
    "iam:AddUserToGroup",
    *(a for kind in _BY_BODY_KINDS for a in kind.restore_actions),
)

RESTORE_PREFIX = "restore:"
_NOT_IMPLEMENTED = frozenset({"NotImplemented", "InvalidAction"})
Progress = Callable[[dict[str, Any]], None]


def _missing(err: ClientError) -> bool:
    return error_code(err) == "NoSuchEntity"


# -- the steps of one user, from its snapshot ----------------------------------------------------


def restore_actions(run_id: int, account_id: str, snapshot: dict[str, Any]) -> list[PlanAction]:
    """The restore steps of one user, in order; ids are stable for a run, so it can resume.

    Args:
        run_id: The restore run (its steps are its own: a later restore compares afresh).
        account_id: The user's account.
        snapshot: As stored before the user's deletion (``tasks.user_teardown``).
    """
    name = snapshot["user_name"]
    base = f"{RESTORE_PREFIX}{run_id}:{account_id}:{name}"
    tags = dict(sorted((snapshot.get("tags") or {}).items()))
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("restore-user", "", {"path": snapshot.get("path") or "/", "tags": tags})
    ]
    if tags:
        steps.append(("restore-tags", "", {"tags": tags}))
    if snapshot.get("permissions_boundary"):
        steps.append(("restore-boundary", "", {"arn": snapshot["permissions_boundary"]}))
    for policy_name, document in sorted((snapshot.get("inline_policies") or {}).items()):
        if policy_name != QUARANTINE_POLICY_NAME:  # it comes back without credentials
            steps.append(
                ("restore-inline-policy", policy_name, {"name": policy_name, "document": document})
            )
    for arn in snapshot.get("attached_policies") or []:
        steps.append(("restore-managed-policy", arn, {"arn": arn}))
    for group in snapshot.get("groups") or []:
        steps.append(("restore-group", group, {"group": group}))
    for kind in _BY_BODY_KINDS:
        for record in snapshot.get(kind.snapshot_field) or []:
            if (record.get("body") or "").strip():
                status = record.get("status") or "Active"
                params = {"body": record["body"].strip(), "status": status}
                steps.append((kind.restore_kind or "", record[kind.snapshot_id or ""], params))
    return [
        PlanAction(
            id=f"{base}:{position:02d}-{kind}" + (f":{item}" if item else ""),
            stage=Stage.DELETE,  # what it restores; the journal records it as stage "restore"
            kind=kind,
            account_id=account_id,
            target=name,
            target_fingerprint="",
            params={"user": name, **params},
        )
        for position, (kind, item, params) in enumerate(steps)
    ]


# restore step kind -> the credential kind it re-creates from its kept body.
_BY_BODY_KIND = {kind.restore_kind: kind for kind in _BY_BODY_KINDS}


def describe(action: PlanAction) -> str:
    """What one step brings back, as a person reads it."""
    params = action.params
    by_body = _BY_BODY_KIND.get(action.kind)
    if by_body is not None:
        return f"{by_body.noun} ({params['status']}, as when deleted)"
    return {
        "restore-user": lambda: f"user {params['user']}",
        "restore-tags": lambda: f"tags {', '.join(f'{k}={v}' for k, v in params['tags'].items())}",
        "restore-boundary": lambda: f"permissions boundary {params['arn']}",
        "restore-inline-policy": lambda: f"inline policy {params['name']}",
        "restore-managed-policy": lambda: f"managed policy {params['arn']}",
        "restore-group": lambda: f"group {params['group']}",
    }[action.kind]()


# -- handlers ------------------------------------------------------------------------------------


class _Step:
    """A restore step: probe whether the snapshot's item is live; apply adds it; never undone."""

    PERMISSIONS: tuple[str, ...] = PERMISSIONS

    def present(self, iam: Any, action: PlanAction) -> bool:
        raise NotImplementedError

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        raise NotImplementedError

    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        return Live(exists=self.present(ctx.iam(action.account_id or ""), action))

    def apply(
        self,
        ctx: ExecutionContext,
        action: PlanAction,
        live: Live,
        progress: Progress,
        prior: JournalEntry | None,
    ) -> Done:
        iam = ctx.iam(action.account_id or "")
        # Resumed after a crash with the item already live: our own earlier call did it.
        if live.exists:
            return Done(outcome=self.finish(iam, action), undo=None)
        try:
            return Done(outcome=self.add(iam, action, progress), undo=None)
        except ClientError as err:
            if error_code(err) in ("NoSuchEntity", "LimitExceeded", *_NOT_IMPLEMENTED):
                # A policy or group that no longer exists, a quota: a person must decide.
                return Done(
                    outcome={"cannot": f"{describe(action)}: {error_message(err)}"}, undo=None
                )
            raise ActionError(action.id, f"{describe(action)}: {error_message(err)}") from err

    def finish(self, iam: Any, action: PlanAction) -> dict[str, Any]:
        return {"restored": describe(action), "resumed": True}

    def undo(self, ctx: ExecutionContext, entry: JournalEntry) -> dict[str, Any]:
        return {"skipped": "a restore is not undone: retire the user again through a plan"}


class RestoreUser(_Step):
    def probe(self, ctx: ExecutionContext, action: PlanAction) -> Live:
        user = user_record(ctx.iam(action.account_id or ""), action.params["user"])
        if user is None:
            return Live(exists=False)
        return Live(exists=True, detail={"user_id": user["UserId"]})

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        params = action.params
        kwargs: dict[str, Any] = {"UserName": params["user"], "Path": params["path"]}
        if params["tags"]:
            kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in params["tags"].items()]
        created = iam.create_user(**kwargs)["User"]
        # Known at once, so a crash right after still tells our user from someone else's.
        progress({"user_id": created["UserId"]})
        shown = f"{describe(action)} (path {params['path']}, {len(params['tags'])} tag(s))"
        return {"user_id": created["UserId"], "restored": shown}

    def finish(self, iam: Any, action: PlanAction) -> dict[str, Any]:
        user = user_record(iam, action.params["user"]) or {}
        return {"user_id": user.get("UserId"), "restored": describe(action), "resumed": True}


class RestoreTags(_Step):
    def present(self, iam: Any, action: PlanAction) -> bool:
        live = {
            t["Key"]: t["Value"]
            for t in _pages(iam, "list_user_tags", "Tags", UserName=action.params["user"])
        }
        return all(live.get(k) == v for k, v in action.params["tags"].items())

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        tags = [{"Key": k, "Value": v} for k, v in action.params["tags"].items()]
        iam.tag_user(UserName=action.params["user"], Tags=tags)
        return {"restored": describe(action)}


class RestoreBoundary(_Step):
    def present(self, iam: Any, action: PlanAction) -> bool:
        user = user_record(iam, action.params["user"]) or {}
        return (user.get("PermissionsBoundary") or {}).get(
            "PermissionsBoundaryArn"
        ) == action.params["arn"]

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        try:
            iam.put_user_permissions_boundary(
                UserName=action.params["user"], PermissionsBoundary=action.params["arn"]
            )
        except ClientError as err:
            # A boundary policy deleted since, or one AWS refuses: named, not fatal.
            return {"cannot": f"{describe(action)}: {error_message(err)}"}
        return {"restored": describe(action)}


class RestoreInlinePolicy(_Step):
    def present(self, iam: Any, action: PlanAction) -> bool:
        try:
            iam.get_user_policy(UserName=action.params["user"], PolicyName=action.params["name"])
        except ClientError as err:
            if _missing(err):
                return False
            raise
        return True

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        iam.put_user_policy(
            UserName=action.params["user"],
            PolicyName=action.params["name"],
            PolicyDocument=json.dumps(action.params["document"]),
        )
        return {"restored": describe(action)}


class RestoreManagedPolicy(_Step):
    def present(self, iam: Any, action: PlanAction) -> bool:
        return any(
            p["PolicyArn"] == action.params["arn"]
            for p in _pages(
                iam,
                "list_attached_user_policies",
                "AttachedPolicies",
                UserName=action.params["user"],
            )
        )

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        iam.attach_user_policy(UserName=action.params["user"], PolicyArn=action.params["arn"])
        return {"restored": describe(action)}


class RestoreGroup(_Step):
    def present(self, iam: Any, action: PlanAction) -> bool:
        return any(
            g["GroupName"] == action.params["group"]
            for g in _pages(iam, "list_groups_for_user", "Groups", UserName=action.params["user"])
        )

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        iam.add_user_to_group(GroupName=action.params["group"], UserName=action.params["user"])
        return {"restored": describe(action)}


class _RestoreByBody(_Step):
    """A public credential found again by its body (a re-upload gets a new id), then its
    status as when deleted: SSH public keys and signing certificates."""

    def __init__(self, kind: CredentialKind):
        self.noun = kind.noun
        self.id_key = kind.snapshot_id or ""
        self.calls = CALLS[kind.name]

    def _live(self, iam: Any, user: str) -> dict[str, tuple[str, str]]:
        """body -> (id, status) of the user's credentials of this kind."""
        raise NotImplementedError

    def _upload(self, iam: Any, user: str, body: str) -> str:
        raise NotImplementedError

    def _set_status(self, iam: Any, user: str, credential_id: str, status: str) -> None:
        self.calls.set_status(iam, user, credential_id, status)

    def present(self, iam: Any, action: PlanAction) -> bool:
        live = self._live(iam, action.params["user"]).get(action.params["body"])
        return live is not None and live[1] == action.params["status"]

    def add(self, iam: Any, action: PlanAction, progress: Progress) -> dict[str, Any]:
        user, status = action.params["user"], action.params["status"]
        live = self._live(iam, user).get(action.params["body"])
        if live is None:
            live = (self._upload(iam, user, action.params["body"]), "Active")
            progress({self.id_key: live[0]})
        if live[1] != status:
            self._set_status(iam, user, live[0], status)
        return {"restored": f"{self.noun} {live[0]} ({status}, as when deleted)"}

    def finish(self, iam: Any, action: PlanAction) -> dict[str, Any]:
        return {**self.add(iam, action, lambda _: None), "resumed": True}


class RestoreSshKey(_RestoreByBody):
    """An SSH public key by its body, then its status."""

    def _live(self, iam: Any, user: str) -> dict[str, tuple[str, str]]:
        return {
            body["SSHPublicKeyBody"].strip(): (key["SSHPublicKeyId"], key["Status"])
            for key, body in CALLS[SSH_PUBLIC_KEY.name].bodies(iam, user)
        }

    def _upload(self, iam: Any, user: str, body: str) -> str:
        uploaded = iam.upload_ssh_public_key(UserName=user, SSHPublicKeyBody=body)
        return uploaded["SSHPublicKey"]["SSHPublicKeyId"]


class RestoreCertificate(_RestoreByBody):
    """A signing certificate by its body, then its status."""

    def _live(self, iam: Any, user: str) -> dict[str, tuple[str, str]]:
        return {
            (c.get("CertificateBody") or "").strip(): (c["CertificateId"], c["Status"])
            for c in self.calls.listed(iam, user)
        }

    def _upload(self, iam: Any, user: str, body: str) -> str:
        uploaded = iam.upload_signing_certificate(UserName=user, CertificateBody=body)
        return uploaded["Certificate"]["CertificateId"]


# credential kind -> its restore handler (each re-creates a kind from its kept body).
_BY_BODY_HANDLERS: dict[str, type[_RestoreByBody]] = {
    SSH_PUBLIC_KEY.name: RestoreSshKey,
    SIGNING_CERTIFICATE.name: RestoreCertificate,
}

HANDLERS: dict[str, Handler] = {
    "restore-user": RestoreUser(),
    "restore-tags": RestoreTags(),
    "restore-boundary": RestoreBoundary(),
    "restore-inline-policy": RestoreInlinePolicy(),
    "restore-managed-policy": RestoreManagedPolicy(),
    "restore-group": RestoreGroup(),
    **{kind.restore_kind or "": _BY_BODY_HANDLERS[kind.name](kind) for kind in _BY_BODY_KINDS},
}


# -- whose name is it, and what can't come back --------------------------------------------------


def ours(live: dict[str, Any], snapshot_user_id: str, earlier: list[JournalEntry]) -> bool:
    """Whether the live user holding the name is the snapshot's user or one a restore made.

    Args:
        live: ``GetUser`` of the name.
        snapshot_user_id: The unique id the snapshot was taken of.
        earlier: Journal rows of restores of this user (``Store.restore_rows``).
    """
    if live["UserId"] == snapshot_user_id:
        return True
    for entry in earlier:
        if entry.kind != "restore-user":
            continue
        outcome = entry.outcome or {}
        made = outcome.get("user_id") or (outcome.get("adopted") or {}).get("user_id")
        if made == live["UserId"]:
            return True
        # Cut off between CreateUser and recording its id: a user created after that
        # attempt's intent was written is the one it created.
        created: datetime | None = live.get("CreateDate")
        if made is None and entry.status == "started" and created and created >= entry.started:
            return True
    return False


def _lost(kind: CredentialKind, snapshot: dict[str, Any], live: set[str]) -> list[str]:
    """Lines for what of one kind the snapshot had and the user does not hold live."""
    held = snapshot.get(kind.snapshot_field)
    if kind.flag:
        return [kind.lost_line({})] if (held or {}).get("existed") and not live else []
    return [kind.lost_line(r) for r in held or [] if r[kind.snapshot_id or ""] not in live]


def cannot_come_back(iam: Any, snapshot: dict[str, Any], user_id: str | None) -> list[str]:
    """What of the snapshot no restore can bring back, as lines for a person to act on.

    A user that kept its unique id (its deletion stopped half-way) keeps what is still live,
    and resource policies that name it still apply.
    """
    same = user_id is not None and user_id == snapshot.get("user_id")
    name = snapshot["user_name"]
    lines = []
    for kind in CREDENTIAL_KINDS:
        if kind.lost:
            live = set(CALLS[kind.name].live(iam, name)) if same and kind in _READ_LIVE else set()
            lines.extend(_lost(kind, snapshot, live))
    for kind in _BY_BODY_KINDS:
        for record in snapshot.get(kind.snapshot_field) or []:
            if not (record.get("body") or "").strip():
                lines.append(f"{kind.noun} {record.get(kind.snapshot_id or '')}: no body kept")
    if not same:
        lines.append(
            f"resource-policy grants: the user now has a new unique id ({user_id}); any "
            f"resource policy that named the old one ({snapshot.get('user_id')}) shows that bare "
            "id and does not apply to this user: grant again where needed"
        )
    return lines
