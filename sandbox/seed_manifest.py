"""What a seeding made, and the class an inventory must give each seeded user."""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

PROTECTED_GLOBS = ("breakglass-*",)  # what the demo spec protects by name
PROTECTED_TAG = ("iamc:protected", "true")
INACTIVE_DAYS = 90


@dataclass
class SeededUser:
    name: str
    kind: str
    expected_class: str  # protected | unused | human | workload (see expected_class())
    email: str | None = None  # the person's address, for humans
    note: str = ""


@dataclass
class SeededAccount:
    account_id: str
    name: str
    ou: str
    status: str  # ACTIVE | SUSPENDED
    users: list[SeededUser] = field(default_factory=list)

    def counts_by_class(self) -> dict[str, int]:
        return dict(sorted(Counter(u.expected_class for u in self.users).items()))

    def counts_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(u.kind for u in self.users).items()))


@dataclass
class SeedManifest:
    """What the seeding made, and what an inventory should conclude about each user."""

    seed: int
    management_account_id: str
    organization_id: str
    instance_arn: str
    identity_store_id: str
    accounts: list[SeededAccount] = field(default_factory=list)
    identity_users: list[dict[str, str]] = field(default_factory=list)
    identity_groups: dict[str, list[str]] = field(default_factory=dict)  # group -> user names
    unmatched_humans: list[str] = field(default_factory=list)
    ambiguous_humans: dict[str, list[str]] = field(default_factory=dict)
    sample_key_id: str | None = None  # the access key id planted in the sample code
    sample_key_user: str | None = None
    sample_key_account: str | None = None
    # Every access key planted for the key scan to find (AWS-side and in the samples), with
    # where it must be found: {"key_id", "user", "account_id", "source", "where",
    # "with_secret", "history_only"}; "where" is the start of the scanner's location string.
    planted_keys: list[dict[str, Any]] = field(default_factory=list)
    # Look-alikes in the samples that a scan must not report as keys: {"where", "kind", "why"}.
    decoys: list[dict[str, str]] = field(default_factory=list)
    # The central-roles target's identity account (seeded with central=True; not one of
    # ``accounts``: its users are the people, where they sign in, not users to migrate).
    central_account: str | None = None
    # Its IAM users, one per identity-store user: {"user_name", "email", "arn", "mfa_serial"}.
    central_users: list[dict[str, str]] = field(default_factory=list)

    def counts_by_class(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for account in self.accounts:
            total.update(account.counts_by_class())
        return dict(sorted(total.items()))

    def counts_by_kind(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for account in self.accounts:
            total.update(account.counts_by_kind())
        return dict(sorted(total.items()))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for account, raw in zip(self.accounts, data["accounts"], strict=True):
            raw["counts_by_class"] = account.counts_by_class()
        data["counts_by_class"] = self.counts_by_class()
        data["counts_by_kind"] = self.counts_by_kind()
        data["inactive_days"] = INACTIVE_DAYS
        data["protected_globs"] = list(PROTECTED_GLOBS)
        return data


def expected_class(
    name: str,
    tags: dict[str, str],
    *,
    has_password: bool,
    has_mfa: bool,
    has_other_credentials: bool,
    last_activity: datetime | None,
    created: datetime,
    now: datetime,
) -> str:
    """The class an inventory must give a user (the rules the inventory implements).

    protected: name matches a protected glob, or tag iamc:protected=true; else unused: no
    credential at all, or none used within 90 days (never used: the creation date counts);
    else human: console password or MFA device; else workload.
    """
    if any(fnmatch.fnmatchcase(name, glob) for glob in PROTECTED_GLOBS):
        return "protected"
    if tags.get(PROTECTED_TAG[0]) == PROTECTED_TAG[1]:
        return "protected"
    if not (has_password or has_mfa or has_other_credentials):
        return "unused"
    activity = last_activity or created
    if now - activity > timedelta(days=INACTIVE_DAYS):
        return "unused"
    if has_password or has_mfa:
        return "human"
    return "workload"
