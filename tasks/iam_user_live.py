"""One IAM user as it is now: the reads every stage that takes access away re-proves itself on.

A plan names a user by account and name; the unique id (``AIDA…``) is what says it is still
the same person: a user deleted and created again under the same name gets a new one
(IAM User Guide, "Unique identifiers": "if you delete a user and create a new one with the
same name, the new user has a different unique ID").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from tasks.aws import error_code

READ_PERMISSIONS = ("iam:GetUser", "iam:ListUserTags")


@dataclass(frozen=True)
class LiveUser:
    """What the checks need of a user, read now."""

    name: str
    user_id: str
    arn: str
    tags: dict[str, str] = field(default_factory=dict)


def user_record(iam: Any, user_name: str) -> dict[str, Any] | None:
    """``GetUser`` of ``user_name`` as IAM answers it, or None when no user holds the name."""
    try:
        return iam.get_user(UserName=user_name)["User"]
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise


def read_live_user(iam: Any, user_name: str, *, tags: bool = True) -> LiveUser | None:
    """The user as IAM has it now, with every tag; None when no user has that name.

    Args:
        iam: An IAM client of the user's account.
        user_name: The user's name.
        tags: Read its tags too (one more call); without, ``tags`` is empty.
    """
    raw = user_record(iam, user_name)
    if raw is None:
        return None
    found: dict[str, str] = {}
    try:
        for page in (
            iam.get_paginator("list_user_tags").paginate(UserName=user_name) if tags else ()
        ):
            found.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
    except ClientError as err:
        if error_code(err) == "NoSuchEntity":
            return None
        raise
    return LiveUser(name=raw["UserName"], user_id=raw["UserId"], arn=raw["Arn"], tags=found)
