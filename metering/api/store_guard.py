"""Refuse to answer from a Redis that lost the processor's state (no store marker), or whose
state a processor is still rebuilding from Kafka after such a loss; refuse admission while
Redis refuses writes.

The processor writes a store marker when it first uses a store (`RedisStateStore.store_marker`,
docs/reliability.md). A Redis that was flushed, restarted without persistence or swapped for a
new one has none. Reading such a store, the API would say "nothing used" and admit every new
contact, so usage, history, members, tiers and admission answer 503 instead until a processor
has written the marker again; and while a processor replays a partition to rebuild the
counters (`metering.state.keys.REBUILDING` holds its target), they answer 503
`store_rebuilding`, since the counters are still partial.

The same read probes writes (a tiny SET with a TTL): a Redis that cannot persist (MISCONF),
is full (OOM) or is a read-only replica (READONLY) still answers reads, but the processor can
no longer count and admission can no longer reserve, so admission answers 503
`store_refusing_writes` naming the cause (and `/readyz` is not ready) until writes succeed
again. Usage, history and the other reads still answer: what they show is what Redis holds.

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

    async def readiness(self) -> tuple[str | None, int, str | None]:
        """(store marker or None, number of partitions still being rebuilt, the cause when
        writes are refused or None)."""
        ...


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
        self._rebuilding = 0
        """Partitions still replaying at the last read (0 when none, or no marker)."""
        self._refusing: str | None = None
        """Why Redis refused the probe write at the last read (None: it accepted it)."""
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
        marker, rebuilding, refusing = await self._store.readiness()
        self._refusing = refusing
        self._rebuilding = rebuilding if marker is not None else 0
        self._present = marker is not None and rebuilding == 0
        self._read_at = started
        return self._present

    @property
    def refusing_writes(self) -> str | None:
        """The cause when the last read found Redis refusing writes."""
        return self._refusing

    def refusal(self) -> Problem:
        """The 503 problem for the last read that was not ready."""
        if self._present and self._refusing is not None:
            return refusing_writes(self._refusing)
        if self._rebuilding:
            return rebuilding(self._rebuilding)
        return not_initialised()

    async def require(self, *, writes: bool = False) -> None:
        """Raise the 503 problem unless the store holds its marker and no rebuild is running,
        and, when `writes`, unless Redis accepted the last probe write."""
        if not await self.present():
            raise self.refusal()
        if writes and self._refusing is not None:
            raise refusing_writes(self._refusing)


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


def rebuilding(partitions: int) -> Problem:
    return Problem(
        503,
        "store_rebuilding",
        f"the state store lost its state and a processor is rebuilding it from Kafka "
        f"({partitions} partition(s) still replaying): the counters are partial until the "
        "replay reaches where processing stood before the loss",
        title="State store being rebuilt",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


_REFUSAL_DETAIL = {
    "persistence": "Redis cannot persist its data (MISCONF: disk full or unwritable "
    "directory, with stop-writes-on-bgsave-error on)",
    "out_of_memory": "Redis reached maxmemory under the noeviction policy (OOM)",
    "read_only": "the Redis server is a read-only replica (READONLY)",
}


def refusing_writes(cause: str) -> Problem:
    """503 while Redis answers but refuses writes; `cause` is a `StateStoreRefusingWrites`
    cause name, repeated in the detail and in the document's `cause` member."""
    what = _REFUSAL_DETAIL.get(cause, f"Redis refuses writes ({cause})")
    return Problem(
        503,
        "store_refusing_writes",
        f"the state store refuses writes: {what}; nothing was written, and decisions resume "
        "once an operator has fixed it",
        title="State store refusing writes",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        extra={"cause": cause},
    )
