"""Refuse to answer from a Redis that lost the processor's state (no store marker).

The processor writes a store marker when it first uses a store (`RedisStateStore.store_marker`,
docs/reliability.md). A Redis that was flushed, restarted without persistence or swapped for a
new one has none. Reading such a store, the API would say "nothing used" and admit every new
contact, so usage, history, members, tiers and admission answer 503 instead until a processor
has written the marker again.

The check is cached for `interval_s` (1 s by default) per API process, so the admission hot
path pays no extra Redis round trip: at most one GET per interval, shared by every request of
that interval (concurrent requests that find the cache stale wait for one read). A Redis that
loses its state is therefore refused at most one interval later. Why a cache rather than the
marker as one more KEY of the admission script: docs/decisions/0006-api-store-marker.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from metering.api.problems import Problem


class MarkerSource(Protocol):
    """Where the marker is read (the Redis state store implements it)."""

    async def store_marker(self) -> str | None: ...


class StoreGuard:
    """Whether the store holds the processor's state, from a read at most `interval_s` old."""

    def __init__(
        self,
        store: MarkerSource,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._interval = interval_s
        self._clock = clock
        self._present = False
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._read_at is not None and self._clock() - self._read_at < self._interval

    async def present(self) -> bool:
        """The cached answer, or a new read when it is older than the interval.

        A failed read (Redis unreachable: `StateStoreUnavailable`) propagates and is not
        cached, so the next request tries again.
        """
        if self._fresh():
            return self._present
        async with self._lock:
            if self._fresh():  # another request read it while this one waited
                return self._present
            return await self._read()

    async def refresh(self) -> bool:
        """Read the marker now (readiness probes), and cache the answer."""
        async with self._lock:
            return await self._read()

    async def _read(self) -> bool:
        started = self._clock()  # the answer is as old as the moment the read began
        self._present = await self._store.store_marker() is not None
        self._read_at = started
        return self._present

    async def require(self) -> None:
        """Raise the 503 problem unless the store holds its marker."""
        if not await self.present():
            raise not_initialised()


RETRY_AFTER_S = 5
"""A processor writes the marker again when it is given its partitions: seconds, not minutes."""


def not_initialised() -> Problem:
    return Problem(
        503,
        "store_not_initialised",
        "the state store (Redis) holds no store marker: it was emptied (FLUSHALL, a restart "
        "without persistence, a new instance) or no processor has used it yet, so its counters "
        "cannot be trusted; answers resume once a processor has written the marker again",
        title="State store not initialised",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
