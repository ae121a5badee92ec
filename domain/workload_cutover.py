"""When a workload user may be disabled: its key quiet long enough, or its new role in use since.

A workload user the plan replaces with a role (``replace-with-role``) loses its keys only once
its owner has switched: every key quiet for ``[decommission] inactive_days``, or the
replacement role used (``GetRole``'s ``RoleLastUsed``) after the last use of every key. The
``disable`` stage asks this live before the user's first change in every run
(``stages.disable``); here is only the rule and the words, with key ids masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.keys import mask_key_id


@dataclass(frozen=True)
class KeyLastUse:
    """One access key of the user as IAM reports it now.

    Attributes:
        access_key_id: Whole (read live, never stored); shown masked.
        created: When the key was created (a key never used is quiet only since then).
        last_used: ``GetAccessKeyLastUsed``'s date, or None (never used).
        service / region: Where it was last used (``ServiceName``, ``Region``).
        status: Active | Inactive, now.
    """

    access_key_id: str
    created: datetime | None
    last_used: datetime | None
    service: str | None = None
    region: str | None = None
    status: str = "Active"

    @property
    def last_activity(self) -> datetime | None:
        """The last time the key could have been in use: its last use, else its creation."""
        return self.last_used or self.created


@dataclass(frozen=True)
class RoleUse:
    """The replacement role as IAM reports it now."""

    role_name: str
    exists: bool
    last_used: datetime | None = None
    region: str | None = None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _ago(when: datetime, now: datetime) -> str:
    days = (now - when).days
    if days <= 0:
        return "today"
    return "1 day ago" if days == 1 else f"{days} days ago"


def describe_key_use(key: KeyLastUse, now: datetime) -> str:
    """``key AKIA…WXYZ last used 2026-12-03 (s3, us-east-1), 2 days ago`` (never: created)."""
    shown = mask_key_id(key.access_key_id)
    if key.last_used is None:
        created = _utc(key.created).date().isoformat() if key.created else "?"
        return f"key {shown} never used (created {created})"
    when = _utc(key.last_used)
    where = ", ".join(p for p in (key.service, key.region) if p and p != "N/A")
    return (
        f"key {shown} last used {when.date().isoformat()}"
        + (f" ({where})" if where else "")
        + f", {_ago(when, now)}"
    )


def cutover_refusals(
    keys: list[KeyLastUse],
    role: RoleUse,
    *,
    now: datetime,
    inactive_days: int,
    hint: str = "iamc workloads -c SPEC",
) -> list[str]:
    """Why the workload user may not be disabled yet; empty when its owner has switched.

    Eligible when every key is quiet for ``inactive_days`` (its last use, or its creation
    when never used, that long ago), or when the role is in use and was last used after
    every key's last use. Otherwise one reason, naming the newest key use and the role's.

    Args:
        keys: Every access key of the user (active or not), read live.
        role: The replacement role, read live.
        now: The run's clock.
        inactive_days: ``[decommission] inactive_days``.
        hint: The command that shows the user's evidence.
    """
    now = _utc(now)
    quiet_since = now - timedelta(days=inactive_days)
    active = [k for k in keys if k.last_activity is not None]
    if all(_utc(k.last_activity) <= quiet_since for k in active):  # type: ignore[arg-type]
        return []
    newest = max(active, key=lambda k: _utc(k.last_activity))  # type: ignore[arg-type]
    newest_at = _utc(newest.last_activity)  # type: ignore[arg-type]
    use = describe_key_use(newest, now)
    if role.exists and role.last_used is not None and _utc(role.last_used) > newest_at:
        return []
    if not role.exists:
        why = (
            f"its role {role.role_name} does not exist: apply the replace stage first, "
            "then the owner switches to it"
        )
    elif role.last_used is None:
        why = (
            f"its role {role.role_name} has not been used: the owner has not switched yet ({hint})"
        )
    else:
        why = (
            f"its role {role.role_name} was last used "
            f"{_utc(role.last_used).date().isoformat()}, before the key: the key is still used "
            f"somewhere the owner has not switched ({hint})"
        )
    quiet_on = (newest_at + timedelta(days=inactive_days)).date().isoformat()
    return [
        f"workload not cut over: {use}; {why}. Eligible once the role is used after the key, "
        f"or the key stays quiet until {quiet_on} ([decommission] inactive_days = "
        f"{inactive_days})"
    ]


def cutover_inactive_days(plan_settings: dict[str, Any], spec_days: int) -> int:
    """How long a key must be quiet: the longer of what the change board approved (the plan's
    ``inactive_days``) and what the spec says now."""
    return max(int(plan_settings.get("inactive_days", 0) or 0), spec_days)
