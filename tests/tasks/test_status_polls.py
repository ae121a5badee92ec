"""Polling an asynchronous sso-admin request: first when it is typically done, then back off."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from domain.errors import ActionError
from tasks.handler import TYPICAL_COMPLETION_S, PollPolicy
from tasks.sso_requests import wait_for_status


def _request(completes_after: float, final: str = "SUCCEEDED") -> tuple[Any, list[float]]:
    """A request that completes by time, as AWS's do, and the times it was polled at."""
    made = time.monotonic()
    polls: list[float] = []

    def describe() -> dict[str, Any]:
        polls.append(time.monotonic() - made)
        if polls[-1] < completes_after:
            return {"Status": "IN_PROGRESS"}
        return {"Status": final, "FailureReason": "quota"}

    return describe, polls


def test_one_poll_when_the_request_completes_in_its_typical_time():
    describe, polls = _request(0.15)
    status = wait_for_status(
        describe, PollPolicy(initial=0.05, maximum=1, first=0.2), "a1", "x", "Create"
    )
    assert status["Status"] == "SUCCEEDED"
    assert len(polls) == 1 and polls[0] >= 0.2


def test_a_slower_request_is_polled_with_back_off_not_at_a_fixed_rate():
    describe, polls = _request(0.6)
    wait_for_status(describe, PollPolicy(initial=0.05, maximum=0.4, first=0.1), "a1", "x", "C")
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert polls[0] >= 0.1
    assert 3 <= len(polls) <= 5  # 0.1, then +0.05, +0.1, +0.2, +0.4: done
    assert gaps[-1] >= 2 * 0.05 and gaps[-1] > gaps[0]  # backing off, not a fixed rate


def test_polling_from_the_start_would_cost_more_calls():
    eager, eager_polls = _request(0.3)
    wait_for_status(eager, PollPolicy(initial=0.02, maximum=0.05, first=0.0), "a", "x", "C")
    timed, timed_polls = _request(0.3)
    wait_for_status(timed, PollPolicy(initial=0.02, maximum=0.05, first=0.3), "a", "x", "C")
    assert len(timed_polls) == 1 < len(eager_polls)


def test_failed_and_timed_out_requests_say_so():
    describe, _ = _request(0.0, final="FAILED")
    with pytest.raises(ActionError, match="FAILED: quota"):
        wait_for_status(describe, PollPolicy(first=0.0), "a1", "creating x", "C")
    describe, _ = _request(60)
    with pytest.raises(ActionError, match="still IN_PROGRESS"):
        wait_for_status(
            describe, PollPolicy(initial=0.01, maximum=0.02, timeout=0.1), "a1", "x", "C"
        )


def test_the_default_first_poll_is_the_operations_typical_time_capped_by_the_back_off():
    for operation, seconds in TYPICAL_COMPLETION_S.items():
        assert PollPolicy().first_poll(operation) == min(seconds, PollPolicy().maximum)
        assert PollPolicy(initial=0.005, maximum=0.05).first_poll(operation) == 0.05
