"""AWS rate limits per API family and account: in this process, or shared by every worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyrate_limiter import Duration, Limiter, Rate

from domain.distribution import work_pool
from domain.errors import StateError
from domain.spec import DEFAULT_RATE_LIMITS

if TYPE_CHECKING:
    from state.rate_buckets import RateBuckets

log = logging.getLogger(__name__)

# How much later than the rate strictly allows a waiting call goes (pyrate-limiter's
# ``buffer_ms``, 50 ms by default). A blocked call waits for the oldest call of the window to
# leave it, plus this: with the window full all the time, as the provision stage keeps
# sso-admin's, every 20 calls take 1 s + this, so 50 ms gave up 5 % of the 20 requests/s
# Identity Center allows. A few ms absorb the timer's rounding; a call the service still
# finds too early is throttled and retried by botocore (standard mode).
LIMITER_BUFFER_MS = 5

# After the shared rate limit's DB failed, calls keep this process's limit this long before
# trying it again.
SHARED_RETRY_SECONDS = 30

# botocore's event names use the service id, hyphenated and lower-cased (e.g. "sso-admin").
_API_FAMILY_OF_SERVICE_ID = {"sso-admin": "sso-admin", "identitystore": "identitystore"}


def burst(rate: float) -> int:
    """How many calls a family's limiter lets go at once after a pause: ``rate`` per second.

    The in-process limiter is a sliding window of ``int(rate)`` calls a second (a rate below
    1/s: ``int(rate * 60)`` calls a minute, at least one), all of which may go at once; the
    shared bucket (:mod:`state.rate_buckets`) holds the same number of tokens, so a pause buys
    either the same burst. The window allows at most ``burst`` calls in any second, the
    bucket ``burst + rate`` (its burst, then its refill).
    """
    return int(rate) if rate >= 1 else max(1, int(rate * 60))


class RateLimiters:
    """One thread-safe limiter per API family and account.

    IAM throttles per account; sso-admin and identitystore per Identity Center instance, which
    lives in one (the management or delegated admin) account. Keying by account keeps a busy
    account from starving the others while still honouring each family's rate.

    With ``shared`` (a flow run on a work pool with a PostgreSQL state DB: every worker's
    processes share the limit) each call takes its token from the state DB's bucket of that
    family and account instead, one round trip a call; otherwise the limiters live in this
    process, which is all a single machine's threads need.
    """

    def __init__(self, rates: dict[str, float], shared: RateBuckets | None = None):
        self._rates = {**DEFAULT_RATE_LIMITS, **rates}
        self._limiters: dict[tuple[str, str], Limiter] = {}
        self._lock = threading.Lock()
        self.shared = shared
        self._shared_failed_at: float | None = None

    def limiter(self, family: str, account_id: str) -> Limiter | None:
        rate = self._rates.get(family)
        if rate is None:
            return None
        with self._lock:
            key = (family, account_id)
            if key not in self._limiters:
                # Rates below 1/s are expressed per minute so pyrate-limiter gets an integer.
                period = Duration.SECOND if rate >= 1 else Duration.MINUTE
                self._limiters[key] = Limiter(
                    Rate(burst(rate), period), buffer_ms=LIMITER_BUFFER_MS
                )
            return self._limiters[key]

    def acquire(self, family: str, account_id: str) -> None:
        """Wait until ``family``'s limit in ``account_id`` lets one more call go."""
        rate = self._rates.get(family)
        if rate is None:
            return
        if self.shared is not None and self._shared_usable():
            try:
                wait = self.shared.take(f"{family}/{account_id}", rate, burst(rate))
            except StateError as err:
                self._shared_failed(err)
            else:
                if wait > 0:
                    time.sleep(wait)
                return
        limiter = self.limiter(family, account_id)
        if limiter is not None:
            limiter.try_acquire(family, blocking=True)

    def _shared_usable(self) -> bool:
        failed_at = self._shared_failed_at
        return failed_at is None or time.monotonic() - failed_at >= SHARED_RETRY_SECONDS

    def _shared_failed(self, err: StateError) -> None:
        # The state DB is the run's memory: a run that lost it fails at its next journal
        # write. Until then the calls keep this process's limit, and AWS's throttling
        # (retried by botocore) is the backstop for the other processes' share.
        log.warning(
            "shared AWS rate limit unavailable, limiting this process alone for %ss: %s",
            SHARED_RETRY_SECONDS,
            err,
        )
        self._shared_failed_at = time.monotonic()

    def hook_for(self, account_id: str) -> Callable[..., None]:
        """A botocore ``before-send`` handler: runs before every HTTP attempt, retries included."""

        def before_send(event_name: str, **_: object) -> None:
            service_id = event_name.split(".")[1]
            self.acquire(_API_FAMILY_OF_SERVICE_ID.get(service_id, service_id), account_id)

        return before_send


def shared_rate_buckets(state_url: str) -> RateBuckets | None:
    """The state DB's shared rate buckets when this process runs on a work pool, else None.

    Flow runs on a work pool run on several workers, each account's work in a process of its
    own, so a limit kept in memory would be sent once per process. They share the state DB,
    which holds the limit for all when it is PostgreSQL (:mod:`state.rate_buckets`); outside
    a work pool, or with SQLite, the limit stays in memory and costs no round trip.
    """
    if work_pool() is None:
        return None
    from state.rate_buckets import shared_buckets

    return shared_buckets(state_url)
