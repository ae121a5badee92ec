"""Least privilege applied to synthesis's holders, and the plan's report of it.

Synthesis hands every holder (who receives an access in one account) to :class:`UsageTrim`
before its sets are assembled: in ``trim`` mode a holder whose use is known gets the trimmed
access (``domain.least_privilege.trim_access``), re-fingerprinted, so holders whose trimmed
access is identical still share a set. After assembly, :meth:`UsageTrim.report` is the plan's
``least_privilege`` section: per set the services granted, used (by whom, last when) and never
used; per person what they lose; who was not trimmed and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.fingerprinted_access import FingerprintedAccess, Holder
from domain.least_privilege import (
    Granted,
    HolderUse,
    PolicyIndex,
    Trim,
    access_grants,
    holder_use,
    trim_access,
)
from domain.records import Finding
from domain.usage import UsageRead

TRIM = "trim"
# A read older than this at plan time no longer shows the window the spec asks for: the use
# of its last days is missing, and people's work moves on.
MAX_READ_AGE = timedelta(days=7)


@dataclass
class _Considered:
    holder: Holder
    use: HolderUse
    trim: Trim | None  # None: not trimmed (report mode, or its use is unknown)


class UsageTrim:
    """One plan's least privilege: the usage read, the mode, and each holder considered.

    Args:
        usage: The latest usage read.
        mode: ``report`` (sets unchanged) or ``trim``.
        window_days: The spec's window (shown; the read says which window it covers).
    """

    def __init__(self, usage: UsageRead, mode: str, window_days: int):
        self.usage = usage
        self.mode = mode
        self.window_days = window_days
        # A read shorter than the spec's window can't show what was used in it: trim nobody
        # (``usage_findings`` blocks the plan and says so).
        self.trims = mode == TRIM and usage.window_days >= window_days
        self.considered: list[_Considered] = []
        self._policies: dict[str, PolicyIndex] = {}
        self._trims: dict[tuple[str, frozenset[str]], Trim] = {}
        self._grants: dict[str, Granted] = {}
        self._documents: dict[str, dict[str, Any]] = {}

    def apply(
        self,
        holders: list[Holder],
        documents: dict[str, dict[str, Any]],
        members: dict[tuple[str, str], list[str]],
        active: dict[tuple[str, str], datetime] | None = None,
    ) -> list[Holder]:
        """Consider every holder; in trim mode, give the known ones their trimmed access.

        Args:
            holders: Synthesis's holders (changed in place in trim mode).
            documents: account id -> managed policy ARN -> document.
            members: (account id, IAM group) -> its mapped members (migrated IAM users).
            active: (account id, IAM user) -> its latest sign-in or key use (the inventory's):
                a person active in the window with no use recorded at all is not trimmed
                (the evidence disagrees; losing everything is not a guess to make).

        Returns:
            The holders that still grant anything (a holder trimmed to nothing is dropped:
            its person used nothing of it in the window, and the plan says so).
        """
        self._documents = documents
        kept = []
        for holder in holders:
            group_members = members.get((holder.account_id, holder.subject), [])
            use = holder_use(holder, group_members, self.usage)
            if use.unread is None:
                use.unread = self._silent_but_active(use, active or {})
            trim = None
            if self.trims and use.unread is None:
                trim = self._trim(holder, documents, use)
                holder.access = trim.access
            self.considered.append(_Considered(holder, use, trim))
            if holder.access.grants_anything:
                kept.append(holder)
        return kept

    def _silent_but_active(
        self, use: HolderUse, active: dict[tuple[str, str], datetime]
    ) -> str | None:
        """Why a holder's use can't be trusted: one of its people signed in or used a key in
        the window, yet no use of any service was recorded for them; None: it can be."""
        read_at = datetime.fromisoformat(self.usage.read_at.replace("Z", "+00:00"))
        start = read_at - timedelta(days=self.usage.window_days)
        for account_id, person in use.people:
            found = self.usage.known(account_id, person)
            when = active.get((account_id, person))
            if found is None or found.services or found.actions or when is None:
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if when >= start:
                return (
                    f"{person} signed in or used a key on {when:%Y-%m-%d}, within the window, "
                    "but no use of any service was recorded: not trimmed (the evidence "
                    "disagrees)"
                )
        return None

    def _index(self, account_id: str, documents: dict[str, dict[str, Any]]) -> PolicyIndex:
        if account_id not in self._policies:
            self._policies[account_id] = PolicyIndex(documents.get(account_id, {}))
        return self._policies[account_id]

    def _trim(self, holder: Holder, documents: dict[str, dict[str, Any]], use: HolderUse) -> Trim:
        # Same access and same services used: the same trim (a 10,000-user plan stays linear).
        key = (holder.access.fingerprint, frozenset(use.used))
        if key not in self._trims:
            policies = self._index(holder.account_id, documents)
            self._trims[key] = trim_access(holder.access, policies, set(use.used))
        return self._trims[key]

    def _granted(self, account_id: str, access: FingerprintedAccess) -> Granted:
        if access.fingerprint not in self._grants:
            self._grants[access.fingerprint] = access_grants(
                access, self._policies.get(account_id) or PolicyIndex({})
            )
        return self._grants[access.fingerprint]

    def report(self, names: dict[str, str]) -> dict[str, Any]:
        """The plan's ``least_privilege`` section.

        Args:
            names: access fingerprint -> permission set name (after assembly).
        """
        documents = self._documents
        sets: dict[str, dict[str, Any]] = {}
        losses: list[dict[str, Any]] = []
        unread: list[dict[str, Any]] = []
        for item in self.considered:
            holder = item.holder
            self._index(holder.account_id, documents)
            name = names.get(holder.access.fingerprint) if holder.access.grants_anything else None
            if name is not None:
                granted = self._granted(holder.account_id, holder.access)
                _add_use(sets.setdefault(name, _empty_set(granted)), granted, item.use)
            if item.use.unread is not None:
                unread.append(
                    {
                        "account_id": holder.account_id,
                        "holder": holder.reason,
                        "permission_set": name,
                        "reason": item.use.unread,
                    }
                )
            if item.trim is not None and item.trim.loses_anything:
                losses.extend(_losses(item, name))
        for entry in sets.values():
            _finish_set(entry)
        losses.sort(key=lambda x: (x["account_id"], x["user"], x["via"]))
        return {
            "mode": self.mode,
            "window_days": self.window_days,
            "usage_hash": self.usage.content_hash(),
            "read_at": self.usage.read_at,
            "read_window_days": self.usage.window_days,
            "trimmed": self.trims,
            "sets": dict(sorted(sets.items())),
            "losses": losses,
            "unread": sorted(unread, key=lambda x: (x["account_id"], x["holder"])),
        }


WINDOW_SHORT = "usage-window-short"


def usage_findings(
    usage: UsageRead | None, mode: str, window_days: int, now: datetime | None = None
) -> list[Finding]:
    """Why a trim-mode plan can't rely on the usage read: none (a warning: access is copied as
    it is), a read shorter than the spec's window or older than ``MAX_READ_AGE`` (blocking).

    Args:
        usage: The latest usage read (None: none stored).
        mode: The spec's ``[least_privilege] mode``; report mode trims nothing: no finding.
        window_days: The spec's ``[least_privilege] window_days``.
        now: Plan time (default: now).
    """
    if mode != TRIM:
        return []
    if usage is None:
        return [
            Finding(
                "warning",
                "usage-not-read",
                "least privilege mode is trim but no usage read is stored: every set copies "
                "its access as it is. Run 'iamc usage', then 'iamc plan' again to trim",
            )
        ]
    findings = []
    if usage.window_days < window_days:
        findings.append(
            Finding(
                "blocking",
                WINDOW_SHORT,
                f"the usage read {usage.id} covers {usage.window_days} days, the spec's "
                f"[least_privilege] window_days is {window_days}: nobody was trimmed (use "
                "outside the read's window is unknown). Run 'iamc usage' again, then "
                "'iamc plan'",
                details={"read_window_days": usage.window_days, "window_days": window_days},
            )
        )
    read_at = datetime.fromisoformat(usage.read_at.replace("Z", "+00:00"))
    if (now or datetime.now(UTC)) - read_at > MAX_READ_AGE:
        findings.append(
            Finding(
                "blocking",
                "usage-read-old",
                f"the usage read {usage.id} was made at {usage.read_at}, more than "
                f"{MAX_READ_AGE.days} days before this plan: what people used since is "
                "unknown. Run 'iamc usage' again, then 'iamc plan'",
                details={"read_at": usage.read_at},
            )
        )
    return findings


def _empty_set(granted: Granted) -> dict[str, Any]:
    return {"granted": granted.as_json(), "used": {}, "never_used": [], "holders": 0}


def _add_use(entry: dict[str, Any], granted: Granted, use: HolderUse) -> None:
    entry["holders"] += 1
    if use.unread is not None:
        entry["holders_unread"] = entry.get("holders_unread", 0) + 1
        return
    for ns, (when, who) in use.used.items():
        if not granted.covers(ns):
            continue  # used through another of the person's sets, not this one
        seen = entry["used"].setdefault(ns, {"last": when, "by": []})
        seen["last"] = max(seen["last"], when)
        seen["by"].extend(who)


def _finish_set(entry: dict[str, Any]) -> None:
    for seen in entry["used"].values():
        seen["by"] = sorted(set(seen["by"]))
    entry["used"] = dict(sorted(entry["used"].items()))
    if entry["holders"] == entry.get("holders_unread", 0):
        # Nobody's use of the set was read: unread is never taken as unused.
        entry["never_used"] = None
    elif isinstance(entry["granted"], list):
        # By the holders whose use was read only (an unread holder added nothing to "used").
        entry["never_used"] = [ns for ns in entry["granted"] if ns not in entry["used"]]


def _losses(item: _Considered, name: str | None) -> list[dict[str, Any]]:
    """One entry per person who loses something: the user, or each mapped group member."""
    holder, trim = item.holder, item.trim
    assert trim is not None
    via = "own access" if holder.principal_type == "USER" else f"group {holder.subject}"
    return [
        {
            "account_id": account_id,
            "user": user,
            "via": via,
            "permission_set": name,
            **trim.as_json(),
        }
        for account_id, user in item.use.people
    ]


def usage_staleness(section: dict[str, Any] | None, latest: UsageRead | None) -> str | None:
    """Why a plan that relied on a usage read is stale now, or None while it is current.

    A newer read that found other use (other services or actions, or other users unread:
    ``UsageRead.content_hash``) makes the plan stale as a changed inventory does: its sets
    (in trim mode) and its report were computed from use that is no longer the latest.

    Args:
        section: The plan's ``least_privilege`` section (None: the plan read no usage).
        latest: The migration's latest usage read.
    """
    if section is None:
        return None
    if latest is None:
        return (
            f"usage: the plan relied on usage read at {section['read_at']}, which is no "
            "longer stored: run 'iamc usage', then 'iamc plan' again"
        )
    current = latest.content_hash()
    if current == section["usage_hash"]:
        return None
    return (
        f"usage: a newer usage read (read at {latest.read_at}, hash {current[:12]}) differs "
        f"from the one the plan relied on (read at {section['read_at']}, hash "
        f"{section['usage_hash'][:12]}): re-plan ('iamc plan') and approve again"
    )
