"""The lag of a partition: records of the log after the applied position."""

from __future__ import annotations

from metering.core.freshness import LogRange, PartitionProgress, freshness, lag_of


def progress(position: int) -> PartitionProgress:
    return PartitionProgress(position, watermark_ms=1_000, applied_ms=2_000)


def test_caught_up_when_the_position_is_the_last_offset() -> None:
    assert lag_of(progress(9), LogRange(0, 10)) == 0


def test_records_after_the_position_are_lag() -> None:
    assert lag_of(progress(3), LogRange(0, 10)) == 6


def test_nothing_applied_yet_counts_the_whole_log() -> None:
    assert lag_of(None, LogRange(0, 10)) == 10
    assert lag_of(None, LogRange(0, 0)) == 0


def test_records_deleted_by_retention_are_not_lag() -> None:
    assert lag_of(None, LogRange(40, 50)) == 10
    assert lag_of(progress(5), LogRange(40, 50)) == 10


def test_freshness_lists_every_partition_of_the_log_in_order() -> None:
    found = freshness({2: LogRange(0, 5), 0: LogRange(0, 0)}, {2: progress(1)})
    assert [(f.partition, f.lag, f.progress) for f in found] == [(0, 0, None), (2, 3, progress(1))]
