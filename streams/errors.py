"""Errors of the Kafka side; aiokafka errors are translated into these at the boundary."""

from __future__ import annotations

from metering.errors import MeteringError


class StreamError(MeteringError):
    """Kafka refused or failed an operation; the message names the operation and the cause."""


class StreamUnavailable(StreamError):
    """The broker could not be reached, timed out, or answered with an error Kafka marks
    retriable (a leader moving, a coordinator loading...): retry with backoff."""


class RecordRejected(StreamError):
    """Kafka refused one record for what it is (too large for the request or the topic):
    sending it again cannot succeed, but other records can."""


class PositionOutOfRange(StreamError):
    """A fetch position is outside the partition's log (retention deleted the records it
    points at, or the log was truncated): `positions` maps (topic, partition) to the offset."""

    def __init__(self, message: str, positions: dict[tuple[str, int], int]) -> None:
        super().__init__(message)
        self.positions = positions


class NotPositioned(StreamError):
    """A partition has no fetch position yet (assigned, not sought by the rebalance listener
    yet, with `auto_offset_reset="none"`): the listener's seek follows; nothing to retry."""

    def __init__(self, message: str, partitions: list[tuple[str, int]]) -> None:
        super().__init__(message)
        self.partitions = partitions
