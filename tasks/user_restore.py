"""Re-creating a deleted IAM user from its snapshot: what AWS allows, and a list of the rest.

A deleted user can't come back as it was: the re-created user gets a new unique id, so
resource policies that named the old one keep a dangling id; access key secrets, the console
password and MFA seeds are gone for good (AWS_FACTS). This re-creates the user, its path,
tags, permissions boundary, inline and attached policies, group memberships, SSH public keys
and signing certificates (as they were when deleted: Inactive), and names everything else.
It never creates access keys. Every step converges, so running it twice changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from domain.keys import mask_key_id
from domain.teardown import QUARANTINE_POLICY_NAME
from tasks.aws import error_code, error_message
from tasks.aws import pages as _pages
from tasks.permissions import RESTORE

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:GetUser",
    "iam:ListUserPolicies",
    "iam:ListAttachedUserPolicies",
    "iam:ListGroupsForUser",
    "iam:ListSSHPublicKeys",
    "iam:GetSSHPublicKey",
    "iam:ListSigningCertificates",
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
    "iam:UploadSSHPublicKey",
    "iam:UpdateSSHPublicKey",
    "iam:UploadSigningCertificate",
    "iam:UpdateSigningCertificate",
)

_NOT_IMPLEMENTED = frozenset({"NotImplemented", "InvalidAction"})


@dataclass
class RestoreResult:
    """What was re-created, what already was there, and what can't be re-created."""

    account_id: str
    user_name: str
    user_id: str | None = None
    old_user_id: str | None = None
    restored: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    cannot: list[str] = field(default_factory=list)


def _ensure_user(iam: Any, snapshot: dict[str, Any], result: RestoreResult) -> bool:
    """Create the user, or find it; False when a different, live user holds the name."""
    name = snapshot["user_name"]
    tags = [{"Key": k, "Value": v} for k, v in sorted((snapshot.get("tags") or {}).items())]
    try:
        kwargs: dict[str, Any] = {"UserName": name, "Path": snapshot.get("path") or "/"}
        if tags:
            kwargs["Tags"] = tags
        created = iam.create_user(**kwargs)["User"]
        result.user_id = created["UserId"]
        result.restored.append(f"user {name} (path {kwargs['Path']}, {len(tags)} tag(s))")
        return True
    except ClientError as err:
        if error_code(err) != "EntityAlreadyExists":
            raise
    live = iam.get_user(UserName=name)["User"]
    result.user_id = live["UserId"]
    if live["UserId"] == snapshot.get("user_id"):
        result.cannot.append(
            f"{name} was never deleted (same unique id {live['UserId']}): nothing to restore"
        )
        return False
    result.present.append(f"user {name}")
    if tags:
        iam.tag_user(UserName=name, Tags=tags)
    return True


def restore_user(iam: Any, account_id: str, snapshot: dict[str, Any]) -> RestoreResult:
    """Re-create one user from its snapshot, converging; list what can't be re-created.

    Args:
        iam: An IAM client of the user's account.
        account_id: The account.
        snapshot: As stored before the user's deletion (``tasks.user_teardown``).

    Returns:
        What was done and what a person must do by hand.
    """
    name = snapshot["user_name"]
    result = RestoreResult(account_id, name, old_user_id=snapshot.get("user_id"))
    if not _ensure_user(iam, snapshot, result):
        return result

    boundary = snapshot.get("permissions_boundary")
    if boundary:
        try:
            iam.put_user_permissions_boundary(UserName=name, PermissionsBoundary=boundary)
            result.restored.append(f"permissions boundary {boundary}")
        except ClientError as err:
            result.cannot.append(f"permissions boundary {boundary}: {error_message(err)}")

    existing_inline = set(
        _pages(iam, "list_user_policies", "PolicyNames", UserName=name)  # names only
    )
    for policy_name, document in sorted((snapshot.get("inline_policies") or {}).items()):
        if policy_name == QUARANTINE_POLICY_NAME:
            continue  # the user comes back without credentials: nothing to quarantine
        if policy_name in existing_inline:
            result.present.append(f"inline policy {policy_name}")
            continue
        iam.put_user_policy(
            UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )
        result.restored.append(f"inline policy {policy_name}")

    attached = {
        p["PolicyArn"]
        for p in _pages(iam, "list_attached_user_policies", "AttachedPolicies", UserName=name)
    }
    for arn in snapshot.get("attached_policies") or []:
        if arn in attached:
            result.present.append(f"managed policy {arn}")
            continue
        try:
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
            result.restored.append(f"managed policy {arn}")
        except ClientError as err:
            result.cannot.append(f"managed policy {arn}: {error_message(err)}")

    groups = {g["GroupName"] for g in _pages(iam, "list_groups_for_user", "Groups", UserName=name)}
    for group in snapshot.get("groups") or []:
        if group in groups:
            result.present.append(f"group {group}")
            continue
        try:
            iam.add_user_to_group(GroupName=group, UserName=name)
            result.restored.append(f"group {group}")
        except ClientError as err:
            result.cannot.append(f"group {group}: {error_message(err)}")

    _restore_ssh_keys(iam, name, snapshot, result)
    _restore_certificates(iam, name, snapshot, result)
    _name_the_rest(snapshot, result)
    return result


def _restore_ssh_keys(iam: Any, name: str, snapshot: dict[str, Any], result: RestoreResult):
    live_bodies = {
        iam.get_ssh_public_key(UserName=name, SSHPublicKeyId=k["SSHPublicKeyId"], Encoding="SSH")[
            "SSHPublicKey"
        ]["SSHPublicKeyBody"].strip()
        for k in _pages(iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=name)
    }
    for key in snapshot.get("ssh_public_keys") or []:
        body = (key.get("body") or "").strip()
        if not body:
            result.cannot.append(f"SSH public key {key.get('ssh_public_key_id')}: no body kept")
            continue
        if body in live_bodies:
            result.present.append(f"SSH public key {key.get('fingerprint') or ''}".strip())
            continue
        uploaded = iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=body)["SSHPublicKey"]
        status = key.get("status") or "Active"
        if status != "Active":
            iam.update_ssh_public_key(
                UserName=name, SSHPublicKeyId=uploaded["SSHPublicKeyId"], Status=status
            )
        result.restored.append(
            f"SSH public key {uploaded['SSHPublicKeyId']} ({status}, as when deleted)"
        )


def _restore_certificates(iam: Any, name: str, snapshot: dict[str, Any], result: RestoreResult):
    live_bodies = {
        c.get("CertificateBody", "").strip()
        for c in _pages(iam, "list_signing_certificates", "Certificates", UserName=name)
    }
    for cert in snapshot.get("signing_certificates") or []:
        body = (cert.get("body") or "").strip()
        if not body:
            result.cannot.append(f"signing certificate {cert.get('certificate_id')}: no body kept")
            continue
        if body in live_bodies:
            result.present.append(f"signing certificate {cert.get('certificate_id')}")
            continue
        try:
            uploaded = iam.upload_signing_certificate(UserName=name, CertificateBody=body)[
                "Certificate"
            ]
        except ClientError as err:
            if error_code(err) in _NOT_IMPLEMENTED:
                result.cannot.append(f"signing certificate: {error_message(err)}")
                continue
            raise
        status = cert.get("status") or "Active"
        if status != "Active":
            iam.update_signing_certificate(
                UserName=name, CertificateId=uploaded["CertificateId"], Status=status
            )
        result.restored.append(
            f"signing certificate {uploaded['CertificateId']} ({status}, as when deleted)"
        )


def _name_the_rest(snapshot: dict[str, Any], result: RestoreResult) -> None:
    for key in snapshot.get("access_keys") or []:
        result.cannot.append(
            f"access key {mask_key_id(key['access_key_id'])} (created {key.get('created')}): "
            "its secret is gone; iamc never creates keys: the owner creates a new one if still "
            "needed (better: use Identity Center)"
        )
    if (snapshot.get("console_password") or {}).get("existed"):
        result.cannot.append(
            "console password: it can't be recovered; set a new one with "
            "'aws iam create-login-profile --password-reset-required' if still needed"
        )
    for device in snapshot.get("mfa_devices") or []:
        result.cannot.append(
            f"MFA device {device['serial']}: its seed is gone; the owner enrols a new one"
        )
    for credential in snapshot.get("service_specific_credentials") or []:
        result.cannot.append(
            f"service-specific credential {credential['credential_id']} "
            f"({credential.get('service_name')}): its password is gone; create a new one"
        )
    result.cannot.append(
        f"resource-policy grants: the user now has a new unique id ({result.user_id}); any "
        f"resource policy that named the old one ({result.old_user_id}) shows that bare id "
        "and does not apply to this user: grant again where needed"
    )
