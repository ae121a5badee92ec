"""The order AWS requires to delete an IAM user, as a table (API_DeleteUser; AWS_FACTS).

Each row names what must go, the IAM action that removes it, and how to find the items in an
inventory record. The planner turns rows into ordered, irreversible delete actions; a row whose
items are gone counts as done (``NoSuchEntity`` is success), so replaying the table is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from domain.records import User


@dataclass(frozen=True)
class TeardownStep:
    kind: str
    iam_actions: tuple[str, ...]
    items: Callable[[User], list[str]]


# DeleteUser fails with DeleteConflict until all of these are gone, in this order
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html#id_users_deleting_cli).
TEARDOWN: tuple[TeardownStep, ...] = (
    TeardownStep(
        "delete-login-profile",
        ("iam:DeleteLoginProfile",),
        lambda u: ["console password"] if u.password_enabled else [],
    ),
    TeardownStep(
        "delete-access-key", ("iam:DeleteAccessKey",), lambda u: [k.key_id for k in u.access_keys]
    ),
    TeardownStep(
        "delete-signing-certificate",
        ("iam:DeleteSigningCertificate",),
        lambda u: [c.certificate_id for c in u.signing_certificates],
    ),
    TeardownStep(
        "delete-ssh-public-key",
        ("iam:DeleteSSHPublicKey",),
        lambda u: [k.key_id for k in u.ssh_public_keys],
    ),
    TeardownStep(
        "delete-service-specific-credential",
        ("iam:DeleteServiceSpecificCredential",),
        lambda u: [c.credential_id for c in u.service_specific_credentials],
    ),
    TeardownStep(
        "delete-mfa-device",
        ("iam:DeactivateMFADevice", "iam:DeleteVirtualMFADevice"),
        lambda u: [d.serial for d in u.mfa_devices],
    ),
    TeardownStep(
        "delete-inline-policy",
        ("iam:DeleteUserPolicy",),
        # The quarantine policy the disable stage attached goes too.
        lambda u: sorted({p.name for p in u.inline_policies} | {QUARANTINE_POLICY_NAME}),
    ),
    TeardownStep(
        "detach-managed-policy",
        ("iam:DetachUserPolicy",),
        lambda u: [p.arn for p in u.attached_policies],
    ),
    TeardownStep("remove-from-group", ("iam:RemoveUserFromGroup",), lambda u: list(u.groups)),
    TeardownStep(
        "delete-permissions-boundary",
        ("iam:DeleteUserPermissionsBoundary",),
        lambda u: [u.permissions_boundary_arn] if u.permissions_boundary_arn else [],
    ),
    TeardownStep("delete-user", ("iam:DeleteUser",), lambda u: [u.name]),
)

# The reversible way to disable a user: keys set Inactive, and a deny-all inline policy so a
# kept console password grants nothing (AWS_FACTS "Reversible ways to disable").
QUARANTINE_POLICY_NAME = "iamc-quarantine"
QUARANTINE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "IamcQuarantine", "Effect": "Deny", "Action": "*", "Resource": "*"},
    ],
}
