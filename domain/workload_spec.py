"""The spec's ``[[workloads]]``: a workload user's runtime, declared by its owner.

A declaration settles what the inference (``domain.workload_runtime``) could only guess: the
runtime, the GitHub repository an OIDC role is pinned to, a vendor's account and ExternalId.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.workloads import Runtime

_TRUST_ANCHOR = r"^arn:aws[\w-]*:rolesanywhere:[\w-]+:\d{12}:trust-anchor/[\w-]+$"


class Workload(BaseModel):
    """One workload IAM user and where its key lives, as its owner declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: Annotated[str, Field(pattern=r"^\d{12}$")]
    user: str
    runtime: Runtime
    repository: Annotated[str | None, Field(pattern=r"^[\w.-]+/[\w.-]+$")] = None  # owner/name
    vendor_account: Annotated[str | None, Field(pattern=r"^\d{12}$")] = None
    external_id: Annotated[str | None, Field(min_length=2, max_length=1224)] = None
    # An on-premises workload's IAM Roles Anywhere trust anchor: its role trusts only it.
    trust_anchor_arn: Annotated[
        str | None,
        Field(pattern=r"^arn:aws[\w-]*:rolesanywhere:[\w-]+:\d{12}:trust-anchor/[\w-]+$"),
    ] = None
    owner: str | None = None

    @model_validator(mode="after")
    def _what_the_runtime_needs(self) -> Workload:
        if self.runtime == Runtime.VENDOR and not (self.vendor_account and self.external_id):
            raise ValueError(
                f"{self.account}/{self.user}: a vendor workload needs vendor_account and "
                "external_id (the vendor's role assumes with that ExternalId)"
            )
        if self.runtime != Runtime.VENDOR and (self.vendor_account or self.external_id):
            raise ValueError(
                f"{self.account}/{self.user}: vendor_account and external_id are for "
                "runtime = 'vendor'"
            )
        if self.trust_anchor_arn and self.runtime != Runtime.ON_PREMISES:
            raise ValueError(
                f"{self.account}/{self.user}: trust_anchor_arn is for runtime = 'on-premises'"
            )
        return self


def workloads_by_user(workloads: list[Workload]) -> dict[tuple[str, str], Workload]:
    """{(account, user): declaration}."""
    return {(w.account, w.user): w for w in workloads}
