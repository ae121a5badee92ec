"""The IAM calls of each credential kind (``domain.credentials``), keyed by the kind's name.

Listing what a user has live, removing one item, setting one's status and reading one kind
for a user's snapshot. The disable, teardown and snapshot adapters find a kind's calls here
through ``CALLS[kind.name]``; which kinds there are, and in what order, is the domain table's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from domain.credentials import (
    ACCESS_KEY,
    CONSOLE_PASSWORD,
    CREDENTIAL_KINDS,
    MFA_DEVICE,
    SERVICE_CREDENTIAL,
    SIGNING_CERTIFICATE,
    SSH_PUBLIC_KEY,
)
from tasks.aws import error_code
from tasks.aws import pages as _pages

READ_PERMISSIONS = tuple(
    a for kind in CREDENTIAL_KINDS for a in (*kind.list_actions, *kind.snapshot_actions)
)
PERMISSIONS = tuple(
    a
    for kind in CREDENTIAL_KINDS
    for a in (*kind.teardown_actions, *((kind.update_action,) if kind.update_action else ()))
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _missing(err: ClientError) -> bool:
    return error_code(err) == "NoSuchEntity"


class CredentialCalls:
    """The IAM calls of one listed credential kind; the operations' names are data."""

    def __init__(
        self,
        list_operation: str,
        list_key: str,
        id_field: str,
        delete_operation: str,
        update_operation: str | None = None,
        *,
        paginated: bool = True,
        may_be_missing: bool = False,
    ):
        self.list_operation = list_operation
        self.list_key = list_key
        self.id_field = id_field  # in the listing, and the id argument of update and delete
        self.delete_operation = delete_operation
        self.update_operation = update_operation
        self.paginated = paginated
        # Some endpoints (moto) lack the API: a listing that answers "not implemented" is
        # taken as none, even by the teardown.
        self.may_be_missing = may_be_missing

    def listed(self, iam: Any, user: str) -> list[dict[str, Any]]:
        if self.paginated:
            return list(_pages(iam, self.list_operation, self.list_key, UserName=user))
        return getattr(iam, self.list_operation)(UserName=user).get(self.list_key, [])

    def live(self, iam: Any, user: str) -> dict[str, str | None]:
        """id -> status of the user's items (raises ``NoSuchEntity`` if the user is gone)."""
        return {item[self.id_field]: item.get("Status") for item in self.listed(iam, user)}

    def remove(self, iam: Any, user: str, item: str) -> None:
        getattr(iam, self.delete_operation)(UserName=user, **{self.id_field: item})

    def set_status(self, iam: Any, user: str, item: str, status: str) -> None:
        if self.update_operation is None:
            raise TypeError(f"{self.list_operation}: no status to set")
        getattr(iam, self.update_operation)(UserName=user, **{self.id_field: item}, Status=status)

    def snapshot(self, iam: Any, user: str) -> Any:
        raise NotImplementedError


class _LoginProfile(CredentialCalls):
    def live(self, iam: Any, user: str) -> dict[str, str | None]:
        try:
            iam.get_login_profile(UserName=user)
        except ClientError as err:
            if _missing(err):
                return {}
            raise
        return {CONSOLE_PASSWORD.noun: None}

    def remove(self, iam: Any, user: str, item: str) -> None:
        iam.delete_login_profile(UserName=user)

    def snapshot(self, iam: Any, user: str) -> dict[str, Any]:
        try:
            profile = iam.get_login_profile(UserName=user)["LoginProfile"]
        except ClientError as err:
            if not _missing(err):
                raise
            return {"existed": False}
        return {"existed": True, "created": _iso(profile.get("CreateDate"))}


class _AccessKeys(CredentialCalls):
    def snapshot(self, iam: Any, user: str) -> list[dict[str, Any]]:
        keys = []
        for key in self.listed(iam, user):
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
        return keys


class _MfaDevices(CredentialCalls):
    def remove(self, iam: Any, user: str, item: str) -> None:
        iam.deactivate_mfa_device(UserName=user, SerialNumber=item)
        # A virtual device's serial is its ARN; it outlives its user unless deleted too.
        if item.startswith("arn:") and ":mfa/" in item:
            try:
                iam.delete_virtual_mfa_device(SerialNumber=item)
            except ClientError as err:
                if not _missing(err):
                    raise

    def snapshot(self, iam: Any, user: str) -> list[dict[str, Any]]:
        return [
            {"serial": d["SerialNumber"], "enabled": _iso(d.get("EnableDate"))}
            for d in self.listed(iam, user)
        ]


class _SshPublicKeys(CredentialCalls):
    def bodies(self, iam: Any, user: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(listing, GetSSHPublicKey answer) of each of the user's keys."""
        return [
            (
                key,
                iam.get_ssh_public_key(
                    UserName=user, SSHPublicKeyId=key["SSHPublicKeyId"], Encoding="SSH"
                )["SSHPublicKey"],
            )
            for key in self.listed(iam, user)
        ]

    def snapshot(self, iam: Any, user: str) -> list[dict[str, Any]]:
        return [
            {
                "ssh_public_key_id": key["SSHPublicKeyId"],
                "status": key["Status"],
                "uploaded": _iso(key.get("UploadDate")),
                "body": body.get("SSHPublicKeyBody"),
                "fingerprint": body.get("Fingerprint"),
            }
            for key, body in self.bodies(iam, user)
        ]


class _SigningCertificates(CredentialCalls):
    def snapshot(self, iam: Any, user: str) -> list[dict[str, Any]]:
        return [
            {
                "certificate_id": cert["CertificateId"],
                "status": cert["Status"],
                "uploaded": _iso(cert.get("UploadDate")),
                "body": cert.get("CertificateBody"),
            }
            for cert in self.listed(iam, user)
        ]


class _ServiceCredentials(CredentialCalls):
    def live(self, iam: Any, user: str) -> dict[str, str | None]:
        # One answer, no order of its own: ids sorted, as the teardown removes them.
        return dict(sorted(super().live(iam, user).items()))

    def snapshot(self, iam: Any, user: str) -> list[dict[str, Any]]:
        try:
            listed = self.listed(iam, user)
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
            for c in listed
        ]


CALLS: dict[str, CredentialCalls] = {
    CONSOLE_PASSWORD.name: _LoginProfile(
        "get_login_profile", "LoginProfile", "UserName", "delete_login_profile"
    ),
    ACCESS_KEY.name: _AccessKeys(
        "list_access_keys",
        "AccessKeyMetadata",
        "AccessKeyId",
        "delete_access_key",
        "update_access_key",
    ),
    MFA_DEVICE.name: _MfaDevices(
        "list_mfa_devices", "MFADevices", "SerialNumber", "deactivate_mfa_device"
    ),
    SSH_PUBLIC_KEY.name: _SshPublicKeys(
        "list_ssh_public_keys",
        "SSHPublicKeys",
        "SSHPublicKeyId",
        "delete_ssh_public_key",
        "update_ssh_public_key",
    ),
    SIGNING_CERTIFICATE.name: _SigningCertificates(
        "list_signing_certificates",
        "Certificates",
        "CertificateId",
        "delete_signing_certificate",
        "update_signing_certificate",
    ),
    # ListServiceSpecificCredentials answers everything for one user at once: no paginator.
    SERVICE_CREDENTIAL.name: _ServiceCredentials(
        "list_service_specific_credentials",
        "ServiceSpecificCredentials",
        "ServiceSpecificCredentialId",
        "delete_service_specific_credential",
        "update_service_specific_credential",
        paginated=False,
        may_be_missing=True,
    ),
}
