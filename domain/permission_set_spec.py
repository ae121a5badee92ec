"""The spec's [permission_sets] and [least_privilege] tables: how synthesized sets are defined."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.usage import DEFAULT_WINDOW_DAYS, MAX_WINDOW_DAYS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ISO-8601 duration as Identity Center accepts it for SessionDuration (1 to 12 hours).
_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?$")


# An AWS-managed policy ARN (any partition), or a customer-managed policy as its path and name
# ("/guardrails/DeveloperBoundary", or just "DeveloperBoundary" for path "/").
_AWS_MANAGED_ARN = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/[\w+=,.@/-]{1,512}$")
_POLICY_PATH_NAME = re.compile(r"^(/(?:[\x21-\x7e]+/)?)?([\w+=,.@-]{1,128})$")


class PermissionSets(_Strict):
    """How synthesized permission sets are defined (the same for every wave)."""

    session_duration: str = "PT8H"
    name_prefix: str = ""
    # The permissions boundary of every permission set and of every role this tool creates:
    # an AWS-managed policy ARN or a customer-managed policy's "/path/Name" (the policy must
    # exist, same name and path, in every account; Identity Center references it by name).
    boundary: str | None = None

    @field_validator("boundary")
    @classmethod
    def _boundary(cls, value: str | None) -> str | None:
        if value is None or _AWS_MANAGED_ARN.match(value) or _POLICY_PATH_NAME.match(value):
            return value
        raise ValueError(
            "expected an AWS-managed policy ARN (arn:aws:iam::aws:policy/NAME) or a "
            "customer-managed policy's path and name ('/path/NAME' or 'NAME')"
        )

    def boundary_reference(self) -> dict[str, Any] | None:
        """The boundary as a permission set definition holds it (``permissions_boundary``):
        ``{"managed_policy_arn": ARN}`` or ``{"customer_managed_policy_reference": {"name",
        "path"}}``; None without one."""
        if self.boundary is None:
            return None
        if self.boundary.startswith("arn:"):
            return {"managed_policy_arn": self.boundary}
        match = _POLICY_PATH_NAME.match(self.boundary)
        assert match is not None  # validated above
        return {
            "customer_managed_policy_reference": {
                "name": match.group(2),
                "path": match.group(1) or "/",
            }
        }

    @field_validator("session_duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        match = _DURATION.match(value)
        minutes = int(match.group(1) or 0) * 60 + int(match.group(2) or 0) if match else 0
        if not 60 <= minutes <= 720:
            raise ValueError("expected an ISO-8601 duration of 1 to 12 hours, such as 'PT8H'")
        return value

    @field_validator("name_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_+=,.@-]{1,12}", value):
            raise ValueError("expected at most 12 characters of [A-Za-z0-9_+=,.@-]")
        return value


class LeastPrivilege(_Strict):
    """Least privilege from use: what the plan does with access granted but never used."""

    # The window of use looked at, ending when usage is read (``iamc usage``).
    window_days: Annotated[int, Field(ge=1, le=MAX_WINDOW_DAYS)] = DEFAULT_WINDOW_DAYS
    # report: the plan shows granted / used / never used per permission set, changes nothing;
    # trim: permission sets keep only what was used, and the plan lists each person's losses.
    mode: Literal["report", "trim"] = "report"
