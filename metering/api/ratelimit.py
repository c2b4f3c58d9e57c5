"""A per-key token bucket, in memory: a simple brake against runaway clients (429).

Each API process keeps its own buckets, so N processes allow N times the rate; that is enough
to stop a loop gone wrong from starving everyone else, which is all this is for (quotas are
what the meters are for). Buckets of idle keys are dropped when the table grows large.

Every answer to an authenticated request tells the caller where its bucket stands, in the
fields of the IETF draft "RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-
headers, the separate-fields form most clients read): `RateLimit-Limit` (the burst),
`RateLimit-Remaining` (whole tokens left), `RateLimit-Reset` (seconds until the bucket is
full again) and `RateLimit-Policy` (`<burst>;w=<seconds to refill it>`). `headers` builds them.
"""

from __future__ import annotations

import math
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

    def take(self, key: str, cost: int = 1) -> float | None:
        """Spend `cost` tokens of `key`'s bucket at once; None when allowed, else the seconds
        to wait until they are there (nothing is spent then). A cost above the burst can
        never be paid: callers bound it (a batch larger than the burst is refused first)."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= cost:
            if len(self._buckets) >= _MAX_BUCKETS and key not in self._buckets:
                self._evict(now)
            self._buckets[key] = (tokens - cost, now)
            return None
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate

    def headers(self, key: str) -> dict[str, str]:
        """The RateLimit fields of `key`'s bucket as it stands now (after this request)."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        return {
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(int(tokens)),
            "RateLimit-Reset": str(math.ceil((self.burst - tokens) / self.rate)),
            "RateLimit-Policy": f"{self.burst};w={math.ceil(self.burst / self.rate)}",
        }

    def _evict(self, now: float) -> None:
        """Drop full buckets (keys idle long enough to have refilled): they hold no state."""
        full = self.burst / self.rate
        for key in [k for k, (_, at) in self._buckets.items() if now - at >= full]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()
