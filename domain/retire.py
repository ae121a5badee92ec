"""Retiring IAM users: use evidence, bake decisions, snapshots and the bake verdict, as data.

The bake period is the time between disabling a user (reversible) and deleting it (not):
a user with evidence of attempted use since it was disabled is ``in-use`` and may not be
deleted until it is re-enabled or a person records a decision. Nothing here talks to AWS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain.errors import ApplyRefused
from domain.keys import mask_key_id


class BakeState(StrEnum):
    BAKING = "baking"  # disabled, bake period not over, no evidence
    READY = "ready"  # bake period over, no evidence (or a decision to delete anyway)
    IN_USE = "in-use"  # evidence of attempted use since disabling, no decision after it
    KEEP = "keep"  # someone decided to keep the user: never deleted by this plan
    RE_ENABLED = "re-enabled"  # the disable was rolled back
    DELETED = "deleted"


class Decision(StrEnum):
    DELETE = "delete"  # delete anyway (the evidence is understood: a stale script, a scanner)
    KEEP = "keep"


@dataclass(frozen=True)
class UseEvidence:
    """One sign that someone tried to use a disabled user: who, when, where, what."""

    account_id: str
    user_name: str
    event_key: str  # CloudTrail's event id, or "last-used:KEY:DATE"
    source: str  # "cloudtrail" | "access-key-last-used"
    event_time: datetime
    event_name: str  # e.g. ListBuckets, ConsoleLogin, or the service a key was last used for
    event_source: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    access_key_id: str | None = None
    error_code: str | None = None

    def describe(self) -> str:
        """One line for people: when, what, from where, with which key (masked)."""
        parts = [f"{self.event_time:%Y-%m-%d %H:%M:%S}Z {self.event_name}"]
        if self.error_code:
            parts.append(f"({self.error_code})")
        if self.source_ip:
            parts.append(f"from {self.source_ip}")
        if self.user_agent:
            parts.append(f"agent {self.user_agent[:60]!r}")
        if self.access_key_id:
            parts.append(f"key {mask_key_id(self.access_key_id)}")
        return " ".join(parts)


@dataclass(frozen=True)
class BakeDecision:
    account_id: str
    user_name: str
    decision: Decision
    decided_by: str
    reason: str
    at: datetime


@dataclass
class BakeStatus:
    """Where one disabled user stands in its bake period."""

    account_id: str
    user_name: str
    plan_id: int
    state: BakeState
    disabled_at: datetime | None
    deletable_from: datetime | None
    evidence: list[UseEvidence] = field(default_factory=list)
    decision: BakeDecision | None = None
    reason: str = ""


def bake_status(
    *,
    account_id: str,
    user_name: str,
    plan_id: int,
    disabled_at: datetime | None,
    bake_days: int,
    evidence: list[UseEvidence],
    decisions: list[BakeDecision],
    now: datetime,
    re_enabled: bool = False,
    deleted: bool = False,
) -> BakeStatus:
    """The verdict for one user.

    Only evidence from after ``disabled_at`` counts; a decision counts only if it was recorded
    after the newest such evidence (new evidence after a decision needs a new decision).
    """
    status = BakeStatus(
        account_id, user_name, plan_id, BakeState.BAKING, disabled_at, None, [], None
    )
    if deleted:
        status.state, status.reason = BakeState.DELETED, "deleted by this migration"
        return status
    if re_enabled or disabled_at is None:
        status.state = BakeState.RE_ENABLED
        status.reason = "re-enabled (the disable was rolled back)" if re_enabled else "not disabled"
        return status
    status.deletable_from = disabled_at + timedelta(days=bake_days)
    status.evidence = sorted(
        (e for e in evidence if e.event_time >= disabled_at), key=lambda e: e.event_time
    )
    newest = status.evidence[-1].event_time if status.evidence else None
    later = [d for d in decisions if newest is None or d.at >= newest]
    status.decision = max(later, key=lambda d: d.at) if later else None
    if status.decision is not None and status.decision.decision == Decision.KEEP:
        status.state = BakeState.KEEP
        status.reason = f"kept: {status.decision.reason} ({status.decision.decided_by})"
        return status
    if status.evidence and status.decision is None:
        status.state = BakeState.IN_USE
        status.reason = (
            f"{len(status.evidence)} attempt(s) to use it since it was disabled, latest "
            f"{status.evidence[-1].describe()}; re-enable it or record a decision "
            "(iamc bake decide)"
        )
        return status
    if now < status.deletable_from:
        left = status.deletable_from - now
        status.reason = (
            f"bake period: {bake_days} days from {disabled_at:%Y-%m-%d %H:%M}Z; "
            f"{left.days} d {left.seconds // 3600} h left"
        )
        return status
    status.state = BakeState.READY
    status.reason = (
        f"decided: {status.decision.reason} ({status.decision.decided_by})"
        if status.decision
        else f"no use in {bake_days} days since disabling"
    )
    return status


@dataclass(frozen=True)
class PolicyReference:
    """A resource policy statement that names a user (it would dangle once the user is gone)."""

    resource_arn: str
    resource_type: str
    statement: dict[str, Any]  # a policy statement, or a KMS grant's principals and operations
    account_id: str = ""  # the account holding the resource (any in-scope account)
    region: str = ""  # its region; "" for IAM (global)

    def describe(self) -> str:
        sid = self.statement.get("Sid")
        grant = self.statement.get("GrantId")
        where = f" in account {self.account_id}" if self.account_id else ""
        where += f" ({self.region})" if self.region else ""
        return (
            f"{self.resource_type} {self.resource_arn}"
            + (f" (statement {sid})" if sid else "")
            + (f" (grant {grant})" if grant else "")
            + where
        )


def parse_user(text: str) -> tuple[str, str]:
    """``ACCOUNT/NAME`` -> (account id, user name).

    Raises:
        ApplyRefused: Not in that form.
    """
    account_id, _, name = text.partition("/")
    if not (account_id.isdigit() and len(account_id) == 12 and name):
        raise ApplyRefused(f"--user: expected ACCOUNT/NAME (e.g. 123456789012/jane), got {text!r}")
    return account_id, name
