"""The order AWS requires to delete an IAM user, as a table (API_DeleteUser; AWS_FACTS).

Each row names what must go, the IAM action that removes it, and how to find the items in an
inventory record; the credential rows come from ``domain.credentials``. The planner turns rows
into ordered, irreversible delete actions, and ``tasks.user_teardown`` holds only the AWS calls
of each row's kind; a row whose items are gone counts as done (``NoSuchEntity`` is success), so
replaying the table is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from domain.credentials import IN_TEARDOWN_ORDER, CredentialKind
from domain.records import User


@dataclass(frozen=True)
class TeardownStep:
    kind: str
    iam_actions: tuple[str, ...]
    items: Callable[[User], list[str]]
    credential: CredentialKind | None = None  # the credential kind the row removes, if any


# DeleteUser fails with DeleteConflict until all of these are gone, in this order
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html#id_users_deleting_cli):
# the credentials first (in their teardown order), then what grants the user access.
TEARDOWN: tuple[TeardownStep, ...] = (
    *(
        TeardownStep(kind.teardown_kind, kind.teardown_actions, kind.ids, kind)
        for kind in IN_TEARDOWN_ORDER
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
