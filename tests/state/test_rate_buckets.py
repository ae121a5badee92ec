"""The shared rate buckets in PostgreSQL: burst, spacing by the rate, one statement a take."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event

from domain.errors import StateError
from state import Store
from state.rate_buckets import RateBuckets, shared_buckets

pytestmark = pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def buckets(store_url: str) -> Iterator[RateBuckets]:
    Store.open(store_url).close()
    opened = RateBuckets(store_url)
    yield opened
    opened.close()


def test_a_bucket_lets_its_burst_go_then_spaces_calls_by_its_rate(buckets: RateBuckets) -> None:
    # One token a second: on a loaded machine (CI: ~30 ms a statement) the bucket must not
    # refill while the test takes from it, as 10 a second did.
    waits, due = [], []
    for _ in range(14):
        waits.append(buckets.take("iam/111111111111", rate=1, capacity=10))
        due.append(time.monotonic() + waits[-1])
    assert waits[:10] == [0.0] * 10
    # Each call past the burst reserves the next token: due 1 s after the one before.
    assert all(0 < wait <= 1.0 * n for n, wait in enumerate(waits[10:], 1)), waits
    spacing = [b - a for a, b in itertools.pairwise(due[10:])]
    assert spacing == pytest.approx([1.0] * 3, abs=0.2), spacing
    # Another account's bucket is full.
    assert buckets.take("iam/222222222222", rate=10, capacity=10) == 0.0


def test_a_bucket_refills_at_its_rate(buckets: RateBuckets) -> None:
    for _ in range(10):
        buckets.take("sts/management", rate=20, capacity=10)
    time.sleep(0.3)  # 6 tokens back, by the database's clock
    waits = [buckets.take("sts/management", rate=20, capacity=10) for _ in range(12)]
    assert waits[:6] == [0.0] * 6
    assert waits[-1] > 0


def test_threads_taking_together_are_scheduled_within_the_limit(buckets: RateBuckets) -> None:
    due: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            wait = buckets.take("iam/111111111111", rate=10, capacity=10)
            with lock:
                due.append(time.monotonic() + wait)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    due.sort()
    # 40 calls: 10 at once, then 10 a second; never more than burst + rate in a second.
    busiest = max(sum(1 for t in due if start <= t < start + 1.0) for start in due)
    assert busiest <= 20 + 1, busiest
    assert due[-1] - due[0] == pytest.approx(3.0, abs=0.3)


def test_a_take_is_one_statement(buckets: RateBuckets) -> None:
    buckets.take("iam/111111111111", rate=10, capacity=10)  # connects
    statements: list[str] = []
    event.listen(
        buckets._connected(),
        "before_cursor_execute",
        lambda _conn, _cursor, sql, *_: statements.append(sql),
    )
    for _ in range(5):
        buckets.take("iam/111111111111", rate=10, capacity=10)
    assert len(statements) == 5
    assert all("ON CONFLICT" in sql for sql in statements)


def test_a_db_without_the_table_is_a_state_error(store_url: str) -> None:
    # The store was never opened: no schema.
    buckets = RateBuckets(store_url.replace("postgres@", "postgres:hunter2@"))
    try:
        with pytest.raises(StateError, match=r"rate bucket in .*\*\*\*.*rate_buckets") as caught:
            buckets.take("iam/111111111111", rate=10, capacity=10)
        assert "hunter2" not in str(caught.value)
    finally:
        buckets.close()


def test_only_a_postgresql_state_shares_its_buckets(store_url: str) -> None:
    assert shared_buckets("sqlite:///.iamc/state.db") is None
    assert shared_buckets("not a url") is None
    found = shared_buckets(store_url)
    assert isinstance(found, RateBuckets)
    assert shared_buckets(store_url) is found  # one per process and URL
