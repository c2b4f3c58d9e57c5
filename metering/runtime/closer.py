"""`metering closer`: a standalone period closer (config follower, outbox publisher, passes).

The closer's logic is streams/period_close.py; this module only builds it from `Settings`
(a processor runs the same `PeriodCloser` as a task, wired in runtime/processor.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from metering.core.directory import Directory
from metering.core.errors import MeteringError
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from streams.config_follower import ConfigFollower
from streams.kafka import new_consumer, new_producer, started, translated
from streams.period_close import CloserConfig, PassReport, PeriodCloser


async def run_closer(settings: Settings, stop: asyncio.Event, *, once: bool = False) -> PassReport:
    """`metering closer`: a standalone closer (config follower, publisher, passes) until `stop`.

    With `once`, one pass, its publishing, and return.
    """
    store = RedisStateStore.from_url(settings.redis_url)
    producer = new_producer(settings, client_id="metering-closer")
    config_consumer = new_consumer(settings, group_id=None, client_id="metering-closer-config")
    directory = Directory()
    follower = ConfigFollower(config_consumer, settings.accounts_topic, directory)
    publisher = OutboxPublisher.from_settings(settings, store, client_id="metering-closer")

    async def partitions() -> Iterable[int]:
        async with translated("read partitions"):
            return set(await producer.partitions_for(settings.events_topic))

    closer = PeriodCloser(
        store,
        directory,
        CloserConfig.from_settings(settings),
        partitions=partitions,
        publisher=publisher,
    )
    try:
        await store.ping()
        async with started(producer, config_consumer):
            await follower.catch_up()
            if once:
                return await closer.close_pass()
            tasks = [
                asyncio.create_task(follower.run(stop), name="config-follower"),
                asyncio.create_task(publisher.run(), name="outbox-publisher"),
                asyncio.create_task(closer.run(), name="period-closer"),
            ]
            tasks[0].add_done_callback(lambda _: stop.set())  # a failed follower stops us
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if follower.failure is not None:
                raise MeteringError(f"the configuration follower stopped: {follower.failure!r}")
            return closer.totals
    finally:
        await publisher.close()
        await store.close()
