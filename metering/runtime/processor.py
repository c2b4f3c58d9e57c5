"""Builds a processor process from `Settings` and runs it until told to stop.

Resources are opened and closed in one place (`ProcessorApp.running`); SIGTERM and SIGINT set
the stop event, the batch in hand is finished (positions stored), the consumer leaves its group
so its partitions move at once, the producer flushes, Redis closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
)

from metering.core.directory import Directory
from metering.core.errors import StreamError
from metering.core.gauge_months import GaugeMonths
from metering.core.mapper import MapperLimits, PlanMapper
from metering.runtime.process import (
    cancel_and_wait,
    freeze_startup_heap,
    metrics_registry,
    stop_on_signals,
)
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from sinks.side_outputs import SideOutputs
from streams.config_follower import ConfigFollower, ConfigMetrics
from streams.kafka import end_offsets, new_consumer, new_producer, started, translated
from streams.metrics import ProcessorMetrics
from streams.period_close import CloserConfig, PeriodCloser
from streams.processor import ProcessorConfig, UsageProcessor
from streams.reminders import ReminderScheduler

log = logging.getLogger(__name__)


@dataclass
class ProcessorApp:
    """One processor process: consumer, config follower, store, publisher and metrics."""

    settings: Settings
    registry: CollectorRegistry
    processor: UsageProcessor
    follower: ConfigFollower
    publisher: OutboxPublisher
    metrics: ProcessorMetrics
    closer: PeriodCloser | None = None
    reminders: ReminderScheduler | None = None


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, registry: CollectorRegistry | None = None, name: str | None = None
) -> AsyncIterator[ProcessorApp]:
    """Open every resource, catch up with the configuration, subscribe; close all on exit."""
    registry = registry or CollectorRegistry()
    metrics = ProcessorMetrics.create(registry)
    client_id = name or f"metering-processor-{socket.gethostname()}-{os.getpid()}"
    # No resend inside redis-py: the processor retries itself, after re-checking the store
    # marker (streams/processor.py), so nothing is written into a Redis that came back empty.
    store = RedisStateStore.from_url(
        settings.redis_url, cluster=settings.redis_cluster, client_retries=0
    )
    producer = new_producer(settings, client_id=client_id)
    config_consumer = new_consumer(settings, group_id=None, client_id=f"{client_id}-config")
    consumer = new_consumer(
        settings,
        group_id=settings.consumer_group,
        client_id=client_id,
        # A position outside the log must stop the processor (or be accepted explicitly),
        # never be reset silently (UsageProcessor._out_of_range).
        auto_offset_reset="none",
        max_poll_interval_ms=300_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(500, settings.kafka_session_timeout_ms // 4),
    )
    directory = Directory()
    follower = ConfigFollower(
        config_consumer, settings.accounts_topic, directory, ConfigMetrics.create(registry)
    )

    kind_counters = {
        "statement": metrics.statements_published,
        "tier": metrics.tiers_published,
        "reminder": metrics.reminders_published,
    }

    def published_kind(kind: str, count: int) -> None:
        kind_counters[kind].inc(count)

    publisher = OutboxPublisher.from_settings(
        settings,
        store,
        client_id=f"{client_id}-publisher",
        on_published=metrics.published.inc,
        on_kind_published=published_kind,
        on_pending=metrics.outbox_accounts.set,
        on_oldest_age=metrics.outbox_oldest_age_seconds.set,
        on_error=metrics.count_error,
    )
    mapper = PlanMapper(
        directory,
        limits := MapperLimits.from_settings(settings),
    )
    # Ladder gauges also feed month shadows; the closer freezes periods (ADR 0004).
    shadowing = GaugeMonths(
        mapper,
        directory,
        grace_ms=limits.grace_ms,
        retention_ms=limits.retention_ms,
    )

    async def partitions() -> set[int]:
        async with translated("read partitions"):
            return set(await producer.partitions_for(settings.events_topic))

    closer = PeriodCloser(
        store,
        directory,
        CloserConfig.from_settings(settings),
        partitions=partitions,
        publisher=publisher,
        end_offsets=lambda parts: end_offsets(config_consumer, settings.events_topic, parts),
    )
    reminders = ReminderScheduler(
        store,
        directory,
        publisher=publisher,
        interval_s=settings.reminder_interval_s,
    )
    processor = UsageProcessor(
        config=ProcessorConfig(
            topic=settings.events_topic,
            group=settings.consumer_group,
            dedup_window_s=settings.dedup_window_s,
            batch_max_records=settings.batch_max_records,
            accept_lost_records=settings.accept_lost_records,
        ),
        consumer=consumer,
        store=store,
        mapper=shadowing,
        side_outputs=SideOutputs(
            producer,
            dead_letter_topic=settings.dead_letter_topic,
            late_topic=settings.late_topic,
            on_summarised=metrics.dead_letters_truncated.inc,
        ),
        publisher=publisher,
        metrics=metrics,
    )
    try:
        await store.ping()
        async with started(producer, config_consumer, consumer):
            await follower.catch_up()
            consumer.subscribe([settings.events_topic], listener=processor.listener())
            try:
                yield ProcessorApp(
                    settings, registry, processor, follower, publisher, metrics, closer, reminders
                )
            finally:
                await publisher.close()
    finally:
        await store.close()


async def run_until_stopped(
    settings: Settings,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    gc_tuning: bool = False,
) -> None:
    """Run a processor (and its publisher and config follower) until `stop` is set."""
    async with running(settings, registry=registry) as app:
        if gc_tuning:
            tune_gc()
        log.info(
            "processor running: group %s, topic %s", settings.consumer_group, settings.events_topic
        )
        follower = asyncio.create_task(app.follower.run(stop), name="config-follower")
        # A follower that stopped on an error stops the processor: it would otherwise meter
        # with a configuration that no longer follows the topic (issue 14).
        follower.add_done_callback(lambda _: stop.set())
        tasks = [follower, asyncio.create_task(app.publisher.run(), name="outbox-publisher")]
        if app.closer is not None:
            tasks.append(asyncio.create_task(app.closer.run(), name="period-closer"))
        if app.reminders is not None:
            tasks.append(asyncio.create_task(app.reminders.run(), name="reminders"))
        try:
            await app.processor.run(stop)
        finally:
            await cancel_and_wait(tasks)
        if app.follower.failure is not None:
            raise StreamError(
                f"the configuration follower stopped: {app.follower.failure!r}"
            ) from app.follower.failure


def tune_gc() -> None:
    """Freeze the long-lived objects (plans, accounts, caches) out of the cyclic collector and
    collect the young generation less often.

    The hot path allocates many short-lived, acyclic objects per event; with the default
    threshold (700) the collector ran every few events and traversed the long-lived heap, which
    measured as half of the per-event CPU time (docs/benchmarks.md). Memory is still freed by
    reference counting; only cycle detection runs less often.
    """
    freeze_startup_heap()
    gc.set_threshold(100_000, 50, 100)


def main_processor(settings: Settings) -> None:
    """Entry point of `metering processor`: metrics endpoint, signals, run.

    The endpoint also carries the standard `process_*` (CPU, memory, file descriptors) and
    `python_info` series, so the dashboard can show a processor's resources next to its work.
    """
    registry = metrics_registry(settings, resources=True)

    async def _main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await run_until_stopped(settings, stop, registry=registry, gc_tuning=True)
        log.info("processor stopped cleanly")

    asyncio.run(_main())
