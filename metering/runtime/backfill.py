"""Backfill: rebuild counters, rollups, statements and tiers from the event history in Kafka.

`metering backfill --from TIME [--redis-url URL]` replays the events topic into a target Redis
(a fresh, empty database: it refuses one that holds keys) and then closes every period the
replay covers. It runs the processor's own batch step (`UsageProcessor.process`: the same
`PlanMapper`, `AccountWork` and `RedisStateStore.apply`, the same per-partition watermark)
with the month shadows of ladder gauges (metering/core/gauge_months.py), so the target ends up with
exactly what live processing wrote, and then the closer's own pass (streams/period_close.py)
freezes the same totals into the same statements and tier events.

What it replays: every partition from the first record appended at or after FROM (Kafka's
`offsets_for_times` on record timestamps) to the end offsets seen when it started. What it
closes: the periods that start at or after FROM (earlier ones were not seen whole; they stay
open in the target) and are due by the replayed watermarks. Gauge months are closed only when
every partition was replayed from offset 0: a gauge's level needs its whole history.

Differences from live processing, by construction: dead-letter and late records are counted,
not sent again; Kafka offsets are not committed (the target's positions are stored under the
processor's group, so a processor pointed at the target resumes after the replay); events are
mapped with the configuration of now, not of when they were first processed (a limit change
moves crossings, never totals); the dedup window is measured on the replay's clock.
Statements and tier events stay in the target's outboxes unless `--publish` sends them (same
ids as live: consumers deduplicate).
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from metering.core.directory import Directory
from metering.core.errors import BackfillRefused, MeteringError
from metering.core.gauge_months import GaugeMonths
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.ports import ConsumedRecord, SourceRef
from metering.runtime.progress import Reporter
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from streams.config_follower import ConfigFollower
from streams.kafka import new_consumer, new_producer, translated
from streams.metrics import ProcessorMetrics
from streams.period_close import CloserConfig, Partitions, PassReport, PeriodCloser
from streams.processor import ProcessorConfig, UsageProcessor

log = logging.getLogger(__name__)


@dataclass
class BackfillReport:
    """What a backfill replayed and closed."""

    events: int
    """Records replayed."""
    seconds: float
    rejected: int
    late: int
    gauges_closed: bool
    closed: PassReport
    published: int = 0


class _SideCounts:
    """Stands in for `SideOutputs`: dead-letter and late records were sent by live processing;
    the backfill counts them instead of sending them again."""

    def __init__(self) -> None:
        self.rejected = 0
        self.late_records = 0

    async def dead_letter(self, source: SourceRef, key: Any, value: Any, **why: Any) -> None:
        self.rejected += 1

    async def late(self, source: SourceRef, key: Any, value: Any, *, meters: list[str]) -> None:
        self.late_records += 1

    async def flush(self) -> None:
        return None


class _HeldOutboxes:
    """Stands in for the publisher during the replay: outboxes are published (or not) once,
    after the close."""

    async def publish_accounts(self, accounts: list[str]) -> int:
        return 0


class _NoCommits:
    """Stands in for the consumer inside `UsageProcessor.process`: no group, nothing assigned
    and nothing to commit; the lag gauge is not fed (no highwater)."""

    def assignment(self) -> set[TopicPartition]:
        return set()

    async def commit(self, offsets: Any) -> None:
        return None

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


async def backfill(
    settings: Settings,
    *,
    from_ms: int,
    target_url: str,
    publish: bool = False,
    progress: TextIO | None = sys.stderr,
) -> BackfillReport:
    """Replay the events topic from `from_ms` into the (empty) Redis at `target_url`, close
    the periods it covers, and optionally publish the outboxes. See the module docstring."""
    target = RedisStateStore.from_url(target_url, cluster=settings.redis_cluster)
    try:
        await target.ping()
        keys_found = await target.key_count()
        if keys_found:
            raise BackfillRefused(
                f"the target Redis holds {keys_found} keys; backfill rebuilds into an empty one"
            )
        return await _with_kafka(
            settings, target, from_ms=from_ms, publish=publish, progress=progress
        )
    finally:
        await target.close()


async def _with_kafka(
    settings: Settings,
    target: RedisStateStore,
    *,
    from_ms: int,
    publish: bool,
    progress: TextIO | None,
) -> BackfillReport:
    """Start the Kafka clients, read the configuration, run, stop the clients."""
    client_id = f"metering-backfill-{uuid.uuid4().hex[:8]}"
    consumer = new_consumer(settings, group_id=None, client_id=client_id)
    config_consumer = new_consumer(settings, group_id=None, client_id=f"{client_id}-config")
    producer = new_producer(settings, client_id=client_id)
    started: list[Any] = []
    try:
        async with translated("start Kafka clients"):
            await config_consumer.start()
            started.append(config_consumer)
            await consumer.start()
            started.append(consumer)
            await producer.start()  # its metadata gives the partitions; it publishes if asked
            started.append(producer)
        directory = Directory()
        await ConfigFollower(config_consumer, settings.accounts_topic, directory).catch_up()
        return await _run(
            settings,
            directory,
            consumer,
            target,
            producer,
            from_ms=from_ms,
            publish=publish,
            progress=progress,
        )
    finally:
        for client in reversed(started):
            try:
                await client.stop()
            except Exception as exc:  # noqa: BLE001 - closing down; nothing left to do
                log.debug("stopping a Kafka client: %s", exc)


async def _run(
    settings: Settings,
    directory: Directory,
    consumer: Any,
    target: RedisStateStore,
    producer: Any,
    *,
    from_ms: int,
    publish: bool,
    progress: TextIO | None,
) -> BackfillReport:
    topic = settings.events_topic
    async with translated(f"read {topic} offsets"):
        parts = await producer.partitions_for(topic)
        if not parts:
            raise MeteringError(f"topic {topic} not found")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, from_ms))
        ends = await consumer.end_offsets(tps)
    starts = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}
    for tp in tps:
        consumer.seek(tp, starts[tp])
    active = {tp for tp in tps if starts[tp] < ends[tp]}
    bar = Reporter("backfill", sum(ends[tp] - starts[tp] for tp in tps), progress)
    bar.__enter__()
    side = _SideCounts()
    limits = MapperLimits.from_settings(settings)
    processor = UsageProcessor(
        config=ProcessorConfig(
            topic=topic,
            group=settings.consumer_group,
            dedup_window_s=settings.dedup_window_s,
            batch_max_records=settings.batch_max_records,
        ),
        consumer=_NoCommits(),
        store=target,
        mapper=GaugeMonths(
            PlanMapper(directory, limits),
            directory,
            grace_ms=limits.grace_ms,
            retention_ms=limits.retention_ms,
        ),
        side_outputs=side,
        publisher=_HeldOutboxes(),
        metrics=ProcessorMetrics.create(CollectorRegistry()),
    )
    while active:
        async with translated(f"read {topic}"):
            batches = await consumer.getmany(
                *active, timeout_ms=500, max_records=settings.batch_max_records
            )
        records: dict[TopicPartition, list[ConsumedRecord]] = {}
        for tp, batch in batches.items():
            kept = [r for r in batch if r.offset < ends[tp]]
            if kept:
                records[tp] = kept
        if records:
            await processor.process(records)
            bar.advance(sum(len(r) for r in records.values()))
        for tp in list(active):
            async with translated(f"read {topic} positions"):
                if await consumer.position(tp) >= ends[tp]:
                    active.discard(tp)
    bar.__exit__(None, None, None)
    whole = all(starts[tp] == 0 for tp in tps)
    publisher = None
    if publish:
        publisher = OutboxPublisher.from_settings(
            settings, target, client_id="metering-backfill-publisher"
        )
    closer = PeriodCloser(
        target,
        directory,
        CloserConfig.from_settings(settings, not_before_ms=from_ms, gauges=whole),
        partitions=_fixed(p.partition for p in tps),
    )
    closed = await closer.close_pass()
    published = 0
    if publisher is not None:
        try:
            published = await publisher.sweep()
        finally:
            await publisher.close()
    return BackfillReport(
        events=bar.done,
        seconds=bar.elapsed_s,
        rejected=side.rejected,
        late=side.late_records,
        gauges_closed=whole,
        closed=closed,
        published=published,
    )


def _fixed(partitions: Iterable[int]) -> Partitions:
    """A partitions provider for partitions known in advance."""
    parts = sorted(partitions)

    async def provide() -> list[int]:
        return parts

    return provide
