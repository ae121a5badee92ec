"""The spec's target: Identity Center (default) or cross-account roles from one identity account.

``target = "central-roles"`` is the runbook's own native path (CIS 1.21's "designate a central
IAM account"): people sign in to one identity account — as its IAM users, or through roles an
external IdP federates into with SAML — and switch into a role per distinct access in each
member account. ``[central]`` says which account that is and how people arrive there.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IDENTITY_CENTER = "identity-center"
CENTRAL_ROLES = "central-roles"
Target = Literal["identity-center", "central-roles"]

# How people arrive in the central account.
IAM_USERS = "iam-users"  # the central account's IAM users (MFA required on every switch)
SAML_ROLES = "saml-roles"  # roles an external IdP federates into via SAML
Arrival = Literal["iam-users", "saml-roles"]

# IAM paths: "/" or /segment/.../ (IAM API reference, CreateRole Path).
_PATH = re.compile(r"^/([\x21-\x7e]{1,510}/)?$")
# Tags' allowed characters (IAM API reference, Tag).
_TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{0,256}$")


class Central(BaseModel):
    """``[central]``: the identity account of the ``central-roles`` target.

    Attributes:
        account: The identity account's id: the people's sign-in, and CIS 1.21's "account
            providing centralized IAM user management" (its users pass the verdict).
        arrive: ``iam-users`` (people are the account's IAM users; every member role's trust
            requires MFA) or ``saml-roles`` (people arrive through roles an external IdP
            federates into; the mapping names the role each person arrives as).
        role_path: The path of every role and group the target creates.
        role_prefix: Prefix of member role and central group names (the rest is the
            de-duplicated access's name, as a permission set would be named).
        max_session_hours: The member roles' MaxSessionDuration, 1-12 hours.
        people_tag: The tag on a central principal whose value is the person's e-mail
            (mapping's ``email`` rule reads it), besides ``email``/``Email``.
    """

    model_config = ConfigDict(extra="forbid")

    account: Annotated[str, Field(pattern=r"^\d{12}$")]
    arrive: Arrival = IAM_USERS
    role_path: str = "/iamc/"
    role_prefix: Annotated[str, Field(pattern=r"^[\w+=,.@-]{0,20}$")] = "iamc-"
    max_session_hours: Annotated[int, Field(ge=1, le=12)] = 1
    people_tag: Annotated[str, Field(min_length=1, max_length=128)] = "email"

    @field_validator("role_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not _PATH.match(value):
            raise ValueError("expected an IAM path: '/' or '/segment/.../'")
        return value
