"""`metering closer`: a standalone period closer and reminder scheduler (config follower,
outbox publisher, passes); `metering remind --once`: one reminder pass.

The logic is streams/period_close.py and streams/reminders.py; this module only builds them
from `Settings` (a processor runs the same `PeriodCloser` and `ReminderScheduler` as tasks,
wired in runtime/processor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from metering.core.directory import Directory
from metering.core.errors import MeteringError
from metering.core.ports import Clock, wall_clock_ms
from metering.runtime.process import cancel_and_wait
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from streams.config_follower import ConfigFollower
from streams.kafka import end_offsets, new_consumer, new_producer, started, translated
from streams.period_close import CloserConfig, PassReport, PeriodCloser
from streams.reminders import ReminderReport, ReminderScheduler


@dataclass
class CloserApp:
    """A closer process's parts, started and caught up with the configuration."""

    follower: ConfigFollower
    publisher: OutboxPublisher
    closer: PeriodCloser
    reminders: ReminderScheduler


@contextlib.asynccontextmanager
async def closer_app(
    settings: Settings, clock: Clock = wall_clock_ms
) -> AsyncIterator[CloserApp]:
    """Open the store and Kafka clients, catch up with the configuration; close all on exit.

    `clock` is what the closer and the scheduler take for now (tests and `metering remind
    --as-of` move it)."""
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
        clock_ms=clock,
        end_offsets=lambda parts: end_offsets(config_consumer, settings.events_topic, parts),
    )
    reminders = ReminderScheduler(
        store,
        directory,
        publisher=publisher,
        interval_s=settings.reminder_interval_s,
        clock_ms=clock,
    )
    try:
        await store.ping()
        async with started(producer, config_consumer):
            await follower.catch_up()
            yield CloserApp(follower, publisher, closer, reminders)
    finally:
        await publisher.close()
        await store.close()


async def run_closer(
    settings: Settings, stop: asyncio.Event, *, once: bool = False
) -> tuple[PassReport, ReminderReport]:
    """`metering closer`: close passes and reminder passes until `stop`.

    With `once`, one close pass and one reminder pass, their publishing, and return.
    """
    async with closer_app(settings, wall_clock_ms) as app:
        if once:
            return await app.closer.close_pass(), await app.reminders.remind_pass()
        tasks = [
            asyncio.create_task(app.follower.run(stop), name="config-follower"),
            asyncio.create_task(app.publisher.run(), name="outbox-publisher"),
            asyncio.create_task(app.closer.run(), name="period-closer"),
            asyncio.create_task(app.reminders.run(), name="reminders"),
        ]
        tasks[0].add_done_callback(lambda _: stop.set())  # a failed follower stops us
        try:
            await stop.wait()
        finally:
            await cancel_and_wait(tasks)
        if app.follower.failure is not None:
            raise MeteringError(f"the configuration follower stopped: {app.follower.failure!r}")
        return app.closer.totals, app.reminders.totals


async def remind_once(settings: Settings, *, as_of_ms: int | None = None) -> ReminderReport:
    """`metering remind --once [--as-of T]`: one reminder pass and its publishing.

    `as_of_ms` moves the scheduler's clock (reminders due by then are sent, and recorded as
    sent): a demo or a test can show a 15-day reminder without waiting 15 days.
    """
    clock = wall_clock_ms if as_of_ms is None else (lambda: as_of_ms)
    async with closer_app(settings, clock) as app:
        return await app.reminders.remind_pass()
