"""The sandbox's throttling: one token bucket per API family (and account, where AWS's is)."""

from __future__ import annotations

import time


class TokenBucket:
    """Classic token bucket: ``rate`` tokens a second, holding at most one second's worth."""

    def __init__(self, rate: float):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
