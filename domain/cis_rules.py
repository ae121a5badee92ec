"""The spec's ``[cis]`` section: how CIS 1.21 is judged (``domain.cis``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceUser(_Strict):
    """An IAM user its owner declares a service (non-person) user: evidence for CIS 1.21."""

    account: Annotated[str, Field(pattern=r"^\d{12}$")]
    user: str
    owner: str


class CisException(_Strict):
    """A documented exception to CIS 1.21 (typically break-glass): who owns it, why, until when."""

    account: Annotated[str, Field(pattern=r"^\d{12}$")]
    user: str
    owner: str
    reason: str
    expires: date


class Cis(_Strict):
    """How CIS 1.21 is judged: where IAM users are managed centrally, and what is accepted.

    Attributes:
        identity_accounts: The account(s) providing centralized IAM user management; their IAM
            users don't fail them (empty with Identity Center).
        service_users: Users their owners declare services (no console password allowed).
        exceptions: Documented exceptions; an expired one fails the account.
    """

    identity_accounts: list[Annotated[str, Field(pattern=r"^\d{12}$")]] = Field(
        default_factory=list
    )
    service_users: list[ServiceUser] = Field(default_factory=list)
    exceptions: list[CisException] = Field(default_factory=list)
