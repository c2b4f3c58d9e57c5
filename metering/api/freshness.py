"""How fresh the counts are, and waiting until they include what was produced before a call.

Every usage answer carries `freshness`: the account's partition of the events topic, the
event-time watermark and the time the processor last applied records of it, and the lag in
records (produced, not yet applied). `wait` reads the log's end offsets once, at the call, and
polls the processor's stored positions until they pass them or the time is up: "everything
produced before this call is counted" (docs/api.md, "Freshness and waiting").

The log is read through `LogRanges` (streams/log_ranges.py implements it on Kafka;
runtime/api.py wires it), so this module stays free of Kafka. A usage answer never fails
because Kafka does: its Kafka reads are bounded by `read_timeout_s`, and on failure the lag is
null with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from metering.core.errors import StreamError
from metering.core.freshness import LogRange, PartitionFreshness, PartitionProgress, freshness
from metering.core.rfc3339 import format_ms
from metering.state.redis_store import RedisStateStore


class LogRanges(Protocol):
    """The events topic's partitions and offsets (streams.log_ranges.KafkaLogRanges)."""

    async def partition_of(self, account: str) -> int: ...

    async def ranges(self, partitions: Sequence[int] | None = None) -> dict[int, LogRange]: ...


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What `Freshness.wait` reached: caught up or not, per partition."""

    caught_up: bool
    waited_ms: int
    targets: dict[int, int]
    """Partition -> end offset at the call (what had to be applied)."""
    partitions: list[PartitionFreshness]
    """Lag measured against `targets`, not against the end now."""

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def json(self, account: str | None) -> dict[str, Any]:
        return {
            "caught_up": self.caught_up,
            "account": account,
            "waited_ms": self.waited_ms,
            "lag": self.lag,
            "partitions": [
                {"partition": p.partition, "target": self.targets[p.partition], **_progress(p)}
                for p in self.partitions
            ],
        }


def _progress(p: PartitionFreshness) -> dict[str, Any]:
    """The stored progress of one partition as the API shows it."""
    progress = p.progress
    return {
        "position": None if progress is None else progress.position,
        "watermark": None
        if progress is None or progress.watermark_ms <= 0
        else format_ms(progress.watermark_ms),
        "applied_at": None
        if progress is None or progress.applied_ms is None
        else format_ms(progress.applied_ms),
        "lag": p.lag,
    }


@dataclass
class Freshness:
    """Compares the processor's stored positions (`group`, `topic`) with the log."""

    store: RedisStateStore
    log: LogRanges
    group: str
    topic: str
    read_timeout_s: float = 2.0
    """Bound of the Kafka reads of a usage answer (the lag is null past it)."""
    poll_s: float = 0.05
    """How often `wait` reads the positions (one MGET)."""

    async def of_account(self, account: str) -> dict[str, Any]:
        """The `freshness` member of a usage answer; never raises for Kafka's sake."""
        try:
            async with asyncio.timeout(self.read_timeout_s):
                partition = await self.log.partition_of(account)
                logs = await self.log.ranges([partition])
        except (StreamError, TimeoutError) as exc:
            reason = (
                f"Kafka did not answer within {self.read_timeout_s:g} s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            return {
                "partition": None,
                "position": None,
                "watermark": None,
                "applied_at": None,
                "lag": None,
                "caught_up": None,
                "lag_unknown": reason,
            }
        progress = await self.store.progress(self.group, self.topic, [partition])
        (found,) = freshness(logs, progress)
        return {
            "partition": partition,
            **_progress(found),
            "caught_up": found.lag == 0,
            "lag_unknown": None,
        }

    async def wait(self, account: str | None, timeout_ms: int) -> WaitResult:
        """Poll until every record produced before this call (to the account's partition, or
        to every partition) is applied, or `timeout_ms` passed. The end offsets are read once,
        bounded by `read_timeout_s` (`TimeoutError`, or `StreamError` from Kafka: the route
        answers 503)."""
        started = time.monotonic()
        deadline = started + timeout_ms / 1000
        async with asyncio.timeout(self.read_timeout_s):
            partitions = None if account is None else [await self.log.partition_of(account)]
            logs = await self.log.ranges(partitions)
        targets = {p: r.end for p, r in logs.items()}
        parts = sorted(logs)
        while True:
            progress: dict[int, PartitionProgress] = await self.store.progress(
                self.group, self.topic, parts
            )
            found = freshness(logs, progress)
            done = all(p.lag == 0 for p in found)
            now = time.monotonic()
            if done or now >= deadline:
                waited = int((now - started) * 1000)
                return WaitResult(done, waited, targets, found)
            await asyncio.sleep(min(self.poll_s, deadline - now))
