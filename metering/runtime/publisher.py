"""A standalone outbox publisher process (`metering publisher`).

Every processor runs a publisher task already; a standalone one is for deployments that want
crossings, statements and tier events published by a process of their own (or as a backstop
that sweeps every outbox while processors are down). Shard claims and Kafka transactions keep
it from sending what a processor's publisher sends (ADR 0008).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry

from metering.runtime.process import metrics_registry, stop_on_signals
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from streams.metrics import ProcessorMetrics

log = logging.getLogger(__name__)


async def run_publisher(
    settings: Settings, stop: asyncio.Event, registry: CollectorRegistry
) -> None:
    """Publish until `stop` is set."""
    metrics = ProcessorMetrics.create(registry)
    store = RedisStateStore.from_url(settings.redis_url)
    publisher = OutboxPublisher.from_settings(
        settings,
        store,
        client_id="metering-publisher",
        on_published=metrics.published.inc,
        on_pending=metrics.outbox_accounts.set,
        on_error=metrics.count_error,
    )
    task = asyncio.create_task(publisher.run())
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await publisher.close()
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
