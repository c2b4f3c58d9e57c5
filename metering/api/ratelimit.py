"""A per-key token bucket, in memory: a simple brake against runaway clients (429).

Each API process keeps its own buckets, so N processes allow N times the rate; that is enough
to stop a loop gone wrong from starving everyone else, which is all this is for (quotas are
what the meters are for). Buckets of idle keys are dropped when the table grows large.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_MAX_BUCKETS = 50_000


class RateLimiter:
    """`rate_per_s` requests per second per key, with bursts of up to `burst`."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float | None:
        """Spend one token of `key`'s bucket; None when allowed, else seconds to wait."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
                self._evict(now)
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        """Drop full buckets (keys idle long enough to have refilled): they hold no state."""
        full = self.burst / self.rate
        for key in [k for k, (_, at) in self._buckets.items() if now - at >= full]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()
