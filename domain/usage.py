"""What each IAM user actually used in a window: the services and actions AWS reports."""

# Two sources, joined per user (issue 25, part 1):
# - IAM's service-last-accessed data (GenerateServiceLastAccessedDetails with
#   Granularity=ACTION_LEVEL; GetServiceLastAccessedDetails): the last time each service was
#   used, and for the services IAM tracks action by action (S3, EC2, IAM, Lambda, ...; IAM user
#   guide, "Refining permissions using last accessed information") the last time each action
#   was. Access Advisor alone over-reports at service level.
# - CloudTrail management events of the user's keys in the window (LookupEvents by Username):
#   the actions themselves, eventSource + eventName -> "service:Action".
# A user whose usage could not be read is never treated as one who used nothing: it is listed
# in ``UsageRead.unread`` and least privilege leaves its access as it is.

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.policy_documents import canonical_json, sha256_hex

DEFAULT_WINDOW_DAYS = 90
# IAM keeps last-accessed data for 400 days (IAM user guide, "Regions where data is tracked").
MAX_WINDOW_DAYS = 400


def iso_utc(value: datetime) -> str:
    """A time as usage records hold it: ISO-8601 UTC to the second ("2026-11-30T12:00:00Z");
    a naive time is taken as UTC (moto and botocore's parsers may give either)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class UserUsage:
    """One IAM user's use of AWS within the window.

    Attributes:
        account_id: The member account.
        user: The IAM user name.
        services: IAM service namespace ("s3", "ec2", ...) -> the last time the user used it in
            the window, ISO-8601 UTC ("2026-11-30T12:00:00Z"). Services not used in the window
            are absent.
        actions: "service:Action" (IAM action names, e.g. "s3:GetObject") -> last used in the
            window, ISO-8601 UTC: action-level last-accessed data and CloudTrail events joined
            (latest time wins).
        action_level: Namespaces whose action-level data IAM reported (their used actions are
            fully known); for any other used service only the service level is known.
    """

    account_id: str
    user: str
    services: dict[str, str] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    action_level: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.account_id, self.user)

    def as_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "user": self.user,
            "services": dict(sorted(self.services.items())),
            "actions": dict(sorted(self.actions.items())),
            "action_level": sorted(self.action_level),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserUsage:
        return cls(
            account_id=data["account_id"],
            user=data["user"],
            services=dict(data.get("services") or {}),
            actions=dict(data.get("actions") or {}),
            action_level=frozenset(data.get("action_level") or ()),
        )


@dataclass
class UsageRead:
    """One read of the usage of an inventory snapshot's users (``iamc usage``).

    Attributes:
        id: The stored read's id (None before it is stored).
        snapshot_id: The inventory snapshot whose users were read.
        window_days: The window the read covers, ending at ``read_at``.
        read_at: When the read finished, ISO-8601 UTC.
        users: (account id, user name) -> what the user used.
        unread: (account id, user name or "*" for the whole account) -> why its usage could
            not be read (unreachable account, a job that failed, CloudTrail denied...). Partial
            data never passes as complete: least privilege does not narrow these users.
    """

    id: int | None
    snapshot_id: int
    window_days: int
    read_at: str
    users: dict[tuple[str, str], UserUsage] = field(default_factory=dict)
    unread: dict[tuple[str, str], str] = field(default_factory=dict)

    def known(self, account_id: str, user: str) -> UserUsage | None:
        """The user's usage, or None when it was not read (its account or itself unread)."""
        if (account_id, "*") in self.unread or (account_id, user) in self.unread:
            return None
        return self.users.get((account_id, user))

    def content_hash(self) -> str:
        """What a plan that narrows access relies on: which services and actions each user
        used, and who was not read; not when each was last used, nor when or from which
        snapshot the read was made (a newer read that finds the same use keeps the plan)."""
        return sha256_hex(
            canonical_json(
                {
                    "window_days": self.window_days,
                    "users": [
                        [
                            *key,
                            sorted(self.users[key].services),
                            sorted(self.users[key].actions),
                            sorted(self.users[key].action_level),
                        ]
                        for key in sorted(self.users)
                    ],
                    "unread": [[a, u, why] for (a, u), why in sorted(self.unread.items())],
                }
            )
        )
