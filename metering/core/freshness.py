"""How fresh the counts are: what the processor applied of each events partition, against
what the log holds.

The processor stores per partition the offset of the last record it applied (its position),
the event-time watermark reached there, and the time it got there (state/lua/advance_position.lua).
The log's range of a partition is [first offset still held, next offset to be written). The
lag of a partition is the number of records in that range after the position: records
produced and not yet applied. Records below the first held offset (deleted by retention) can
never be applied, so they are not lag.

The events topic is written by non-transactional producers (the API, the SDK, `metering
produce`, kcat): every offset below the end is a record, so a partition is caught up exactly
when its position is the end minus one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """What the processor stored for one partition of the events topic."""

    position: int
    """Offset of the last record applied."""
    watermark_ms: int
    """Largest event time (epoch ms) among the records applied up to the position."""
    applied_ms: int | None
    """When the position was last moved forward (epoch ms); None if stored before the
    processor recorded it."""


@dataclass(frozen=True, slots=True)
class LogRange:
    """Offsets a partition of the events topic holds: [start, end)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PartitionFreshness:
    """One partition: what was applied, and how many records are still waiting."""

    partition: int
    progress: PartitionProgress | None
    """None: the processor has applied nothing of this partition yet."""
    lag: int
    """Records produced to the partition and not applied yet."""


def lag_of(progress: PartitionProgress | None, log: LogRange) -> int:
    """Records of `log` after the applied position (0 when caught up)."""
    applied_up_to = -1 if progress is None else progress.position
    return max(0, log.end - max(applied_up_to + 1, log.start))


def freshness(
    logs: Mapping[int, LogRange], progress: Mapping[int, PartitionProgress]
) -> list[PartitionFreshness]:
    """Each partition of `logs` (sorted), with its stored progress and its lag."""
    return [
        PartitionFreshness(p, progress.get(p), lag_of(progress.get(p), logs[p]))
        for p in sorted(logs)
    ]
