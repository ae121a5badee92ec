"""One IAM user's credentials of each kind, read with the fewest calls the credential report allows.

The inventory (:mod:`tasks.iam_users`) reads each user's credentials through ``READERS``, one
reader per credential kind (``domain.credentials``), and records the operations the endpoint
does not implement as gaps (:class:`Gaps`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from domain.credentials import (
    ACCESS_KEY,
    CONSOLE_PASSWORD,
    MFA_DEVICE,
    SERVICE_CREDENTIAL,
    SIGNING_CERTIFICATE,
    SSH_PUBLIC_KEY,
)
from domain.records import (
    AccessKey,
    MfaDevice,
    ServiceSpecificCredential,
    SigningCertificate,
    SshPublicKey,
    User,
)
from tasks.aws import error_code, marker_pages
from tasks.aws import pages as _pages

log = logging.getLogger(__name__)

READ_PERMISSIONS = (
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:ListMFADevices",
    "iam:ListSSHPublicKeys",
    "iam:ListSigningCertificates",
    "iam:ListServiceSpecificCredentials",
)

# The credential report writes these instead of a date (IAM user guide, "Getting credential
# reports": N/A, no_information, not_supported).
_NO_DATE = {"", "N/A", "no_information", "not_supported"}

# How an endpoint that predates ListServiceSpecificCredentials' AllUsers (or ignores it and
# then wants a UserName from a role caller) refuses it: we fall back to one call per user.
_ALL_USERS_REFUSED = {"ValidationError", "InvalidInput", "InvalidParameterValue"}

# How the endpoint tells us an operation does not exist: moto in-process raises
# NotImplementedError; a server answers with one of these codes or HTTP 501.
_NOT_IMPLEMENTED_CODES = {"NotImplemented", "InvalidAction", "UnknownOperationException"}


@dataclass
class Gaps:
    """Operations the endpoint doesn't implement: recorded once, then not called again."""

    missing: set[str] = field(default_factory=set)

    def call(self, operation: str, fn, *args, **kwargs):
        if operation in self.missing:
            return None
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            self.missing.add(operation)
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error_code(err) in _NOT_IMPLEMENTED_CODES or status == 501:
                self.missing.add(operation)
            else:
                raise
        log.info("%s is not implemented by this endpoint: recorded as a gap", operation)
        return None


def _date(value: str | None) -> datetime | None:
    if value is None or value in _NO_DATE:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def utc(value: datetime | None) -> datetime | None:
    """A timestamp in UTC: botocore may hand back a naive one."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _has_keys(row: dict[str, str] | None) -> bool:
    if row is None:
        return True  # no report row: ask rather than assume
    return any(
        row.get(f"access_key_{n}_last_rotated", "N/A") not in _NO_DATE for n in (1, 2)
    ) or any(row.get(f"access_key_{n}_active") == "true" for n in (1, 2))


def _has_certs(row: dict[str, str] | None) -> bool:
    if row is None:
        return True
    return any(row.get(f"cert_{n}_active") == "true" for n in (1, 2)) or any(
        row.get(f"cert_{n}_last_rotated", "N/A") not in _NO_DATE for n in (1, 2)
    )


def read_all_service_credentials(iam, gaps: Gaps) -> dict[str, list[dict[str, Any]]] | None:
    """Every user's service-specific credentials: one paginated call for the whole account.

    ``AllUsers=True`` (IAM API reference, ListServiceSpecificCredentials: "cannot be specified
    together with UserName") replaces one call per user.

    Returns:
        user name -> credential metadata; ``{}`` when the endpoint lacks the operation (a
        recorded gap); None when it refuses ``AllUsers``: then ask user by user.
    """
    try:
        found = gaps.call(
            "iam:ListServiceSpecificCredentials",
            lambda: list(
                marker_pages(
                    iam.list_service_specific_credentials,
                    "ServiceSpecificCredentials",
                    AllUsers=True,
                )
            ),
        )
    except ClientError as err:
        if error_code(err) not in _ALL_USERS_REFUSED:
            raise
        log.info(
            "ListServiceSpecificCredentials refused AllUsers (%s): reading them user by user",
            error_code(err),
        )
        return None
    by_user: dict[str, list[dict[str, Any]]] = {}
    for raw in found or []:
        by_user.setdefault(raw["UserName"], []).append(raw)
    return by_user


@dataclass
class UserReads:
    """What one user's credential reads go by (the same for every kind)."""

    iam: Any
    row: dict[str, str] | None  # the user's credential report row, if it has one
    gaps: Gaps
    # What read_all_service_credentials found (None: ask user by user).
    service_credentials: dict[str, list[dict[str, Any]]] | None = None


def _read_password(reads: UserReads, user: User) -> None:
    # The credential report has it all; no call of its own.
    if reads.row is not None:
        user.password_enabled = reads.row.get("password_enabled") == "true"
        user.password_last_used = _date(reads.row.get("password_last_used"))
        user.password_last_changed = _date(reads.row.get("password_last_changed"))


def _read_access_keys(reads: UserReads, user: User) -> None:
    if not _has_keys(reads.row):
        return
    iam = reads.iam
    for raw in _pages(iam, "list_access_keys", "AccessKeyMetadata", UserName=user.name):
        key = AccessKey(
            key_id=raw["AccessKeyId"], status=raw["Status"], created=utc(raw.get("CreateDate"))
        )
        used = iam.get_access_key_last_used(AccessKeyId=key.key_id).get("AccessKeyLastUsed", {})
        key.last_used_date = utc(used.get("LastUsedDate"))
        key.last_used_service = (
            None if used.get("ServiceName") in _NO_DATE else used.get("ServiceName")
        )
        key.last_used_region = None if used.get("Region") in _NO_DATE else used.get("Region")
        user.access_keys.append(key)


def _read_mfa_devices(reads: UserReads, user: User) -> None:
    if reads.row is not None:
        user.mfa_active = reads.row.get("mfa_active") == "true"
    if not (user.mfa_active or reads.row is None):
        return
    for raw in _pages(reads.iam, "list_mfa_devices", "MFADevices", UserName=user.name):
        serial = raw["SerialNumber"]
        user.mfa_devices.append(
            MfaDevice(
                serial=serial,
                enabled=utc(raw.get("EnableDate")),
                # Virtual devices have an ARN serial (arn:aws:iam::123:mfa/name).
                virtual=serial.startswith("arn:"),
            )
        )


def _read_ssh_public_keys(reads: UserReads, user: User) -> None:
    ssh = reads.gaps.call(
        "iam:ListSSHPublicKeys",
        lambda: list(
            _pages(reads.iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=user.name)
        ),
    )
    for raw in ssh or []:
        user.ssh_public_keys.append(
            SshPublicKey(
                key_id=raw["SSHPublicKeyId"],
                status=raw["Status"],
                uploaded=utc(raw.get("UploadDate")),
            )
        )


def _read_signing_certificates(reads: UserReads, user: User) -> None:
    if not _has_certs(reads.row):
        return
    certs = reads.gaps.call(
        "iam:ListSigningCertificates",
        lambda: list(
            _pages(reads.iam, "list_signing_certificates", "Certificates", UserName=user.name)
        ),
    )
    for raw in certs or []:
        user.signing_certificates.append(
            SigningCertificate(
                certificate_id=raw["CertificateId"],
                status=raw["Status"],
                uploaded=utc(raw.get("UploadDate")),
            )
        )


def _read_service_credentials(reads: UserReads, user: User) -> None:
    # Absent from the credential report; for one user the API answers in one page.
    if reads.service_credentials is not None:
        service_creds = reads.service_credentials.get(user.name, [])
    else:
        service_creds = reads.gaps.call(
            "iam:ListServiceSpecificCredentials",
            lambda: reads.iam.list_service_specific_credentials(UserName=user.name).get(
                "ServiceSpecificCredentials", []
            ),
        )
    for raw in service_creds or []:
        user.service_specific_credentials.append(
            ServiceSpecificCredential(
                credential_id=raw["ServiceSpecificCredentialId"],
                service_name=raw["ServiceName"],
                service_user_name=raw.get("ServiceUserName", ""),
                status=raw["Status"],
                created=utc(raw.get("CreateDate")),
            )
        )


# credential kind name (domain.credentials) -> how the inventory reads a user's ones, with
# the fewest calls the credential report allows.
READERS: dict[str, Callable[[UserReads, User], None]] = {
    CONSOLE_PASSWORD.name: _read_password,
    ACCESS_KEY.name: _read_access_keys,
    MFA_DEVICE.name: _read_mfa_devices,
    SSH_PUBLIC_KEY.name: _read_ssh_public_keys,
    SIGNING_CERTIFICATE.name: _read_signing_certificates,
    SERVICE_CREDENTIAL.name: _read_service_credentials,
}
