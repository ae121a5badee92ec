"""Rate limits: the burst both limiters allow, and when the state DB's shared buckets are used."""

from __future__ import annotations

import logging

import pytest

from domain.distribution import WORK_POOL_ENV
from domain.errors import StateError
from domain.spec import MigrationSpec
from state.rate_buckets import RateBuckets
from tasks import rate_limits
from tasks.aws import AwsSessions
from tasks.rate_limits import RateLimiters, burst, shared_rate_buckets

PG_STATE = "postgresql+psycopg://iamc@db.example:5432/iamc"


class FakeBuckets:
    """Stands in for the state DB's buckets: records takes, answers a fixed wait or fails."""

    def __init__(self, wait: float = 0.0, fail: bool = False):
        self.wait = wait
        self.fail = fail
        self.takes: list[tuple[str, float, float]] = []

    def take(self, key: str, rate: float, capacity: float) -> float:
        self.takes.append((key, rate, capacity))
        if self.fail:
            raise StateError("state DB postgresql://iamc@db/iamc: connection refused")
        return self.wait


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    seen: list[float] = []
    monkeypatch.setattr(rate_limits.time, "sleep", seen.append)
    return seen


def test_the_burst_is_what_the_in_process_window_lets_go_at_once():
    assert burst(10) == 10
    assert burst(20.0) == 20
    assert burst(2.5) == 2
    assert burst(0.5) == 30  # per minute
    assert burst(0.001) == 1


def test_shared_buckets_only_on_a_work_pool_with_postgresql(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(WORK_POOL_ENV, raising=False)
    assert shared_rate_buckets(PG_STATE) is None
    monkeypatch.setenv(WORK_POOL_ENV, "workers")
    assert shared_rate_buckets("sqlite:///.iamc/state.db") is None
    assert isinstance(shared_rate_buckets(PG_STATE), RateBuckets)  # nothing connected yet


def test_sessions_from_the_spec_share_the_limit_on_a_work_pool(monkeypatch: pytest.MonkeyPatch):
    spec = MigrationSpec(name="m", state=PG_STATE)
    monkeypatch.delenv(WORK_POOL_ENV, raising=False)
    assert AwsSessions.from_spec(spec).limiters.shared is None
    monkeypatch.setenv(WORK_POOL_ENV, "workers")
    assert isinstance(AwsSessions.from_spec(spec).limiters.shared, RateBuckets)


def test_a_shared_limit_takes_a_token_per_call_and_sleeps_what_it_is_told(slept):
    shared = FakeBuckets(wait=0.25)
    limiters = RateLimiters({"iam": 4}, shared=shared)  # type: ignore[arg-type]
    limiters.acquire("iam", "111111111111")
    limiters.acquire("organizations", "management")
    limiters.acquire("ec2", "111111111111")  # no rate: no limit, no round trip
    assert shared.takes == [("iam/111111111111", 4, 4), ("organizations/management", 5.0, 5)]
    assert slept == [0.25, 0.25]
    assert limiters._limiters == {}  # no in-process limiter made


def test_every_http_attempt_takes_a_shared_token(aws):
    shared = FakeBuckets()
    sessions = AwsSessions(region="us-east-1", shared_limits=shared)  # type: ignore[arg-type]
    iam = sessions.management().client("iam")
    iam.list_users()
    iam.list_users()
    assert [key for key, _, _ in shared.takes] == ["iam/management", "iam/management"]


def test_an_unreachable_shared_limit_falls_back_to_this_process(slept, caplog):
    shared = FakeBuckets(fail=True)
    limiters = RateLimiters({"iam": 4}, shared=shared)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="tasks.rate_limits"):
        for _ in range(3):
            limiters.acquire("iam", "111111111111")
    # Tried once, then this process's limiter until SHARED_RETRY_SECONDS have passed.
    assert len(shared.takes) == 1
    assert ("iam", "111111111111") in limiters._limiters
    assert [r.getMessage() for r in caplog.records] == [
        "shared AWS rate limit unavailable, limiting this process alone for 30s: "
        "state DB postgresql://iamc@db/iamc: connection refused"
    ]
