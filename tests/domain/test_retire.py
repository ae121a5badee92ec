"""The bake verdict: evidence after disabling blocks, a later decision unblocks, time tells."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.retire import BakeDecision, BakeState, Decision, UseEvidence, bake_status

DISABLED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def evidence(hours: float) -> UseEvidence:
    return UseEvidence(
        account_id="111111111111",
        user_name="jane",
        event_key=f"cloudtrail:{hours}",
        source="cloudtrail",
        event_time=DISABLED + timedelta(hours=hours),
        event_name="ListBuckets",
        source_ip="203.0.113.9",
        user_agent="aws-cli/2.15",
        access_key_id="AKIAAAAAAAAAAAAAJANE",
        error_code="InvalidClientTokenId",
    )


def decision(hours: float, kind: Decision = Decision.DELETE) -> BakeDecision:
    return BakeDecision(
        "111111111111", "jane", kind, "ops", "moved to a role", DISABLED + timedelta(hours=hours)
    )


def verdict(now_days: float, found=(), decided=(), **kw) -> tuple[BakeState, str]:
    status = bake_status(
        account_id="111111111111",
        user_name="jane",
        plan_id=1,
        disabled_at=DISABLED,
        bake_days=14,
        evidence=list(found),
        decisions=list(decided),
        now=DISABLED + timedelta(days=now_days),
        **kw,
    )
    return status.state, status.reason


def test_a_quiet_user_bakes_then_is_ready():
    state, reason = verdict(3)
    assert state == BakeState.BAKING and "11 d 0 h left" in reason
    assert verdict(14)[0] == BakeState.READY


def test_evidence_after_disabling_makes_it_in_use_with_who_when_where():
    state, reason = verdict(20, [evidence(5)])
    assert state == BakeState.IN_USE
    assert "ListBuckets (InvalidClientTokenId) from 203.0.113.9" in reason
    assert "key AKIA…JANE" in reason and "AKIAAAAAAAAAAAAAJANE" not in reason


def test_evidence_from_before_disabling_does_not_count():
    assert verdict(20, [evidence(-2)])[0] == BakeState.READY


def test_a_decision_counts_only_after_the_newest_evidence():
    assert verdict(20, [evidence(5)], [decision(6)])[0] == BakeState.READY
    assert verdict(20, [evidence(5), evidence(30)], [decision(6)])[0] == BakeState.IN_USE
    assert verdict(20, [evidence(5)], [decision(6, Decision.KEEP)])[0] == BakeState.KEEP
    # A decision does not shorten the bake period.
    assert verdict(3, [evidence(5)], [decision(6)])[0] == BakeState.BAKING


def test_re_enabled_and_deleted_users():
    assert verdict(20, re_enabled=True)[0] == BakeState.RE_ENABLED
    assert verdict(20, deleted=True)[0] == BakeState.DELETED
