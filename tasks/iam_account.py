"""The IAM account's own figures: how many roles it has and may have (GetAccountSummary)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.aws import translate_errors

READ_PERMISSIONS = ("iam:GetAccountSummary",)


def read_role_quota(
    iam: Any, account_id: str, call: Callable[..., Any]
) -> tuple[int | None, int | None]:
    """The account's IAM roles and role quota: GetAccountSummary's SummaryMap ``Roles`` and
    ``RolesQuota`` (1,000 by default, adjustable; IAM and AWS STS quotas). Each permission set
    provisioned to the account is one more role there (an ``AWSReservedSSO_`` role).

    Args:
        iam: The member account's IAM client.
        account_id: The account (for the error's context).
        call: How the inventory calls an operation the endpoint may not implement
            (``call(name, fn)`` returns None then, and records the gap).

    Returns:
        (roles, quota), or (None, None) where the endpoint lacks the call.
    """
    with translate_errors(account_id=account_id, operation="iam:GetAccountSummary"):
        found = call("GetAccountSummary", iam.get_account_summary)
    summary = (found or {}).get("SummaryMap", {})
    roles, quota = summary.get("Roles"), summary.get("RolesQuota")
    return (None, None) if roles is None or quota is None else (int(roles), int(quota))
