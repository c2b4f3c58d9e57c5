"""A standalone outbox publisher process (`metering publisher`).

Every processor runs a publisher task already; a standalone one is for deployments that want
crossings, statements and tier events published by a process of their own (or as a backstop
that sweeps every outbox while processors are down). Claims keep it from sending the same
entries as a processor's publisher.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from metering.runtime.process import metrics_registry, stop_on_signals
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from streams.kafka import new_producer, translated
from streams.metrics import ProcessorMetrics

log = logging.getLogger(__name__)


async def run_publisher(
    settings: Settings, stop: asyncio.Event, registry: CollectorRegistry
) -> None:
    """Publish until `stop` is set."""
    metrics = ProcessorMetrics.create(registry)
    store = RedisStateStore.from_url(settings.redis_url)
    producer = new_producer(settings, client_id="metering-publisher")
    async with translated("start the publisher's producer"):
        await producer.start()
    publisher = OutboxPublisher(
        store,
        producer,
        topic=settings.thresholds_topic,
        statements_topic=settings.statements_topic,
        tiers_topic=settings.tiers_topic,
        reminders_topic=settings.reminders_topic,
        on_published=metrics.published.inc,
        on_pending=metrics.outbox_accounts.set,
    )
    task = asyncio.create_task(publisher.run())
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await store.close()


def main_publisher(settings: Settings) -> None:
    """Entry point: metrics endpoint, signals, run."""
    registry = metrics_registry(settings)

    async def _main() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        await run_publisher(settings, stop, registry)
        log.info("publisher stopped cleanly")

    asyncio.run(_main())
