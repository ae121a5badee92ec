"""What the sandbox counts of the calls it serves: per call, per account, and how fast."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

# The window of the peak rate: AWS states its API rates per second.
PEAK_WINDOW_S = 1.0


class PeakRate:
    """The most calls an account received of one API family in any one window of
    ``PEAK_WINDOW_S``: what an account's rate limit, shared by every client, must bound.

    Keeps only the calls of the last window per (account, family): the peak of every window
    is the peak of the windows that end at a call, and each call is looked at once more when
    it leaves.
    """

    def __init__(self) -> None:
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self.peak: dict[tuple[str, str], int] = {}

    def note(self, account_id: str, family: str, now: float) -> None:
        key = (account_id, family)
        recent = self._recent.setdefault(key, deque())
        recent.append(now)
        while recent[0] <= now - PEAK_WINDOW_S:
            recent.popleft()
        if len(recent) > self.peak.get(key, 0):
            self.peak[key] = len(recent)

    def by_account(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for (account_id, family), peak in sorted(self.peak.items()):
            found.setdefault(account_id, {})[family] = peak
        return found


class CallRecorder:
    """Counts calls per ``service:Operation`` (and per account), throttled attempts apart, and
    the time the sandbox itself spent on them.

    ``busy_cpu_s`` is the CPU time of the threads that served the calls (the added latency is a
    sleep, not counted): moto runs under one interpreter lock, so this is serialized time a
    client cannot win back by asking in parallel. ``peak_per_second`` is, per account and API
    family, the most requests (throttled ones too: the account received them) in any second.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.calls: Counter[str] = Counter()
            self.throttled: Counter[str] = Counter()
            self.errors: Counter[str] = Counter()
            self.by_account: dict[str, Counter[str]] = {}
            self.busy_cpu_s: dict[str, float] = {}
            self.busy_wall_s: dict[str, float] = {}
            self.peaks = PeakRate()

    def record(self, key: str, account_id: str, *, throttled: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self.peaks.note(account_id, key.split(":", 1)[0], now)
            if throttled:
                self.throttled[key] += 1
                return
            self.calls[key] += 1
            self.by_account.setdefault(account_id, Counter())[key] += 1

    def record_time(self, key: str, cpu_s: float, wall_s: float) -> None:
        with self._lock:
            self.busy_cpu_s[key] = self.busy_cpu_s.get(key, 0.0) + cpu_s
            self.busy_wall_s[key] = self.busy_wall_s.get(key, 0.0) + wall_s

    def record_error(self, key: str, code: str) -> None:
        with self._lock:
            self.errors[f"{key}:{code}"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "throttled": dict(self.throttled),
                "errors": dict(self.errors),
                "by_account": {acct: dict(c) for acct, c in self.by_account.items()},
                "total": sum(self.calls.values()),
                "throttled_total": sum(self.throttled.values()),
                "busy_cpu_s": round(sum(self.busy_cpu_s.values()), 4),
                "busy_wall_s": round(sum(self.busy_wall_s.values()), 4),
                "busy_cpu_by_call": {k: round(v, 4) for k, v in self.busy_cpu_s.items()},
                "peak_per_second": self.peaks.by_account(),
            }
