"""One descriptor per IAM user credential kind, in one ordered table every floor reads.

Like cloud-custodian's ``UserDelete.ORDERED_OPTIONS``, a kind's name, where the inventory
record holds it, how it is shown, whether it can be disabled, where it goes in the teardown and
the snapshot, and the IAM actions each of those needs, are one row. The AWS calls of a kind
live in ``tasks.credentials`` and the tables in ``state.models``, both keyed by ``name``: a new
kind is one row here plus its calls.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from domain.keys import mask_key_id
from domain.records import (
    AccessKey,
    MfaDevice,
    ServiceSpecificCredential,
    SigningCertificate,
    SshPublicKey,
    User,
)

ACTIVE = "Active"


class _NoneForMissing(dict[str, Any]):
    def __missing__(self, key: str) -> None:
        return None


@dataclass(frozen=True)
class CredentialKind:
    """What every floor needs of one kind of IAM user credential, as data."""

    name: str  # the key of the kind's AWS calls (tasks.credentials) and ORM table (state)
    noun: str  # as people read it
    user_field: str  # the User attribute holding it: a list of ``record``, or a flag
    record: type | None  # the records class of one item; None: a flag on the user record
    id_field: str | None  # the record's attribute identifying one item
    teardown_kind: str  # the delete plan action removing it (domain.teardown.TEARDOWN)
    teardown_position: int  # its place among the kinds in AWS's delete order
    teardown_actions: tuple[str, ...]
    snapshot_field: str  # its key in a user snapshot (tasks.user_teardown.read_user_snapshot)
    list_actions: tuple[str, ...]  # IAM actions that read a user's live ones
    status_field: str | None = None  # Active | Inactive; None: no status (MFA, password)
    masked: bool = False  # ids shown as prefix + last four (access key ids)
    human: bool = False  # holding one makes a user a person (classification)
    usable: str | None = None  # how classification names active ones ({count}, {plural})
    disable_action: str | None = None  # the disable plan action setting one Inactive
    disable_param: str | None = None  # that action's params key holding the id
    update_action: str | None = None  # the IAM action setting its status
    snapshot_id: str | None = None  # the key identifying one item in a snapshot's list
    snapshot_volatile: tuple[str, ...] = ()  # snapshot fields that change without the user
    snapshot_actions: tuple[str, ...] = ()  # IAM reads a snapshot needs beyond list_actions
    restore_kind: str | None = None  # the restore step re-creating it from its kept body
    restore_actions: tuple[str, ...] = ()
    lost: str | None = None  # why a restore can't bring it back (its secret is gone)
    lost_detail: str = ""  # what a lost item's line adds after its id, from its snapshot

    @property
    def flag(self) -> bool:
        """Whether the user record holds it as a flag (one item, no id), not a list."""
        return self.record is None

    @property
    def record_fields(self) -> tuple[str, ...]:
        """The record's attributes, which are also its table's columns (state.models)."""
        return tuple(f.name for f in fields(self.record)) if self.record else ()

    def items(self, user: User) -> list[Any]:
        """The user record's items of this kind (empty for a flag kind)."""
        return [] if self.flag else list(getattr(user, self.user_field))

    def ids(self, user: User) -> list[str]:
        """Ids of the user's items of this kind; a flag kind's one item is its noun."""
        if self.flag:
            return [self.noun] if getattr(user, self.user_field) else []
        return [getattr(item, self.id_field or "") for item in self.items(user)]

    def active_ids(self, user: User) -> list[str]:
        """Ids of the items that work now (status Active, or no status to say otherwise)."""
        if self.status_field is None:
            return self.ids(user)
        return [
            getattr(item, self.id_field or "")
            for item in self.items(user)
            if getattr(item, self.status_field) == ACTIVE
        ]

    def shown(self, item_id: str) -> str:
        """An id as people may see it: access key ids masked (``AKIA…WXYZ``)."""
        return mask_key_id(item_id) if self.masked else item_id

    def usable_phrase(self, count: int) -> str:
        """How classification names ``count`` active items of this kind."""
        return (self.usable or self.noun).format(count=count, plural="s" if count > 1 else "")

    def lost_line(self, record: dict[str, Any]) -> str:
        """One snapshot item a restore can't bring back, as a line for a person to act on."""
        values = _NoneForMissing(record)
        label = self.noun
        if not self.flag:
            label += f" {self.shown(values[self.snapshot_id or ''])}"
        return f"{label}{self.lost_detail.format_map(values)}: {self.lost}"


CONSOLE_PASSWORD = CredentialKind(
    name="console-password",
    noun="console password",
    user_field="password_enabled",
    record=None,
    id_field=None,
    teardown_kind="delete-login-profile",
    teardown_position=1,
    teardown_actions=("iam:DeleteLoginProfile",),
    snapshot_field="console_password",
    list_actions=("iam:GetLoginProfile",),
    human=True,
    usable="console password",
    lost=(
        "it can't be recovered; set a new one with "
        "'aws iam create-login-profile --password-reset-required' if still needed"
    ),
)
ACCESS_KEY = CredentialKind(
    name="access-key",
    noun="access key",
    user_field="access_keys",
    record=AccessKey,
    id_field="key_id",
    teardown_kind="delete-access-key",
    teardown_position=2,
    teardown_actions=("iam:DeleteAccessKey",),
    snapshot_field="access_keys",
    list_actions=("iam:ListAccessKeys", "iam:GetAccessKeyLastUsed"),
    status_field="status",
    masked=True,
    usable="{count} active access key{plural}",
    disable_action="deactivate-access-key",
    disable_param="access_key_id",
    update_action="iam:UpdateAccessKey",
    snapshot_id="access_key_id",
    snapshot_volatile=("last_used", "last_used_service"),
    lost=(
        "its secret is gone; iamc never creates keys: the owner creates a new one if "
        "still needed (better: use Identity Center)"
    ),
    lost_detail=" (created {created})",
)
MFA_DEVICE = CredentialKind(
    name="mfa-device",
    noun="MFA device",
    user_field="mfa_devices",
    record=MfaDevice,
    id_field="serial",
    teardown_kind="delete-mfa-device",
    teardown_position=6,
    teardown_actions=("iam:DeactivateMFADevice", "iam:DeleteVirtualMFADevice"),
    snapshot_field="mfa_devices",
    list_actions=("iam:ListMFADevices",),
    human=True,
    snapshot_id="serial",
    lost="its seed is gone; the owner enrols a new one",
)
SSH_PUBLIC_KEY = CredentialKind(
    name="ssh-public-key",
    noun="SSH public key",
    user_field="ssh_public_keys",
    record=SshPublicKey,
    id_field="key_id",
    teardown_kind="delete-ssh-public-key",
    teardown_position=4,
    teardown_actions=("iam:DeleteSSHPublicKey",),
    snapshot_field="ssh_public_keys",
    list_actions=("iam:ListSSHPublicKeys",),
    status_field="status",
    usable="SSH public key",
    disable_action="deactivate-ssh-public-key",
    disable_param="ssh_public_key_id",
    update_action="iam:UpdateSSHPublicKey",
    snapshot_id="ssh_public_key_id",
    snapshot_actions=("iam:GetSSHPublicKey",),
    restore_kind="restore-ssh-key",
    restore_actions=("iam:UploadSSHPublicKey", "iam:UpdateSSHPublicKey"),
)
SIGNING_CERTIFICATE = CredentialKind(
    name="signing-certificate",
    noun="signing certificate",
    user_field="signing_certificates",
    record=SigningCertificate,
    id_field="certificate_id",
    teardown_kind="delete-signing-certificate",
    teardown_position=3,
    teardown_actions=("iam:DeleteSigningCertificate",),
    snapshot_field="signing_certificates",
    list_actions=("iam:ListSigningCertificates",),
    status_field="status",
    usable="signing certificate",
    disable_action="deactivate-signing-certificate",
    disable_param="certificate_id",
    update_action="iam:UpdateSigningCertificate",
    snapshot_id="certificate_id",
    restore_kind="restore-certificate",
    restore_actions=("iam:UploadSigningCertificate", "iam:UpdateSigningCertificate"),
)
SERVICE_CREDENTIAL = CredentialKind(
    name="service-specific-credential",
    noun="service-specific credential",
    user_field="service_specific_credentials",
    record=ServiceSpecificCredential,
    id_field="credential_id",
    teardown_kind="delete-service-specific-credential",
    teardown_position=5,
    teardown_actions=("iam:DeleteServiceSpecificCredential",),
    snapshot_field="service_specific_credentials",
    list_actions=("iam:ListServiceSpecificCredentials",),
    status_field="status",
    usable="service-specific credential",
    disable_action="deactivate-service-specific-credential",
    disable_param="credential_id",
    update_action="iam:UpdateServiceSpecificCredential",
    snapshot_id="credential_id",
    lost="its password is gone; create a new one",
    lost_detail=" ({service_name})",
)

# In the order people read them (classification reasons, disable and restore steps); the
# teardown goes by ``teardown_position`` instead.
CREDENTIAL_KINDS: tuple[CredentialKind, ...] = (
    CONSOLE_PASSWORD,
    ACCESS_KEY,
    MFA_DEVICE,
    SSH_PUBLIC_KEY,
    SIGNING_CERTIFICATE,
    SERVICE_CREDENTIAL,
)
BY_NAME: dict[str, CredentialKind] = {kind.name: kind for kind in CREDENTIAL_KINDS}
# DeleteUser fails with DeleteConflict until every credential is gone, in this order
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html#id_users_deleting_cli).
IN_TEARDOWN_ORDER: tuple[CredentialKind, ...] = tuple(
    sorted(CREDENTIAL_KINDS, key=lambda kind: kind.teardown_position)
)
# The kinds the disable stage sets Inactive, one plan action per active item.
DISABLEABLE: tuple[CredentialKind, ...] = tuple(k for k in CREDENTIAL_KINDS if k.disable_action)


def disable_items(user: User) -> list[tuple[CredentialKind, str, str]]:
    """(kind, id, id as people may see it) of every credential the disable stage deactivates.

    Only Active ones: one already Inactive stays as it is, and a rollback never turns it on.
    """
    return [
        (kind, item_id, kind.shown(item_id))
        for kind in DISABLEABLE
        for item_id in kind.active_ids(user)
    ]
