"""Runs the API process: Redis, a Kafka producer, the accounts-topic follower, uvicorn.

The API follows the compacted accounts topic with the same `ConfigFollower` and `Directory`
as the processors, so both read one configuration; it catches up before serving, so a fresh
API process never answers with a configuration older than what was published before it
started. Admin changes go out through `ConfigWriter`; SMS top-ups through the producer to the
events topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator

import uvicorn
from aiokafka import AIOKafkaProducer
from starlette.applications import Starlette

from metering.api.app import create_app
from metering.api.auth import KeyRing
from metering.api.context import ApiConfig, ApiContext
from metering.directory import Directory
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from streams.config_follower import ConfigFollower
from streams.kafka import new_consumer, new_producer, translated

log = logging.getLogger(__name__)


class KafkaEvents:
    """Produces usage events to the events topic, keyed by account (the processor's order)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, account: str, value: bytes) -> None:
        async with translated(f"produce to {self._topic}"):
            await self._producer.send_and_wait(self._topic, value=value, key=account.encode())


@contextlib.asynccontextmanager
async def running(settings: Settings, config: ApiConfig) -> AsyncIterator[ApiContext]:
    """Open Redis and Kafka, catch up with the configuration, follow it; close all on exit."""
    client_id = f"metering-api-{socket.gethostname()}-{os.getpid()}"
    store = RedisStateStore.for_api(settings.redis_url)
    producer = new_producer(settings, client_id=client_id, linger_ms=0)
    consumer = new_consumer(settings, group_id=None, client_id=f"{client_id}-config")
    directory = Directory()
    follower = ConfigFollower(consumer, settings.accounts_topic, directory)
    stop = asyncio.Event()
    started: list[object] = []
    task: asyncio.Task[None] | None = None
    try:
        await store.ping()
        async with translated("start Kafka clients"):
            await producer.start()
            started.append(producer)
            await consumer.start()
            started.append(consumer)
        applied = await follower.catch_up()
        log.info(
            "configuration loaded: %d records, %d accounts", applied, len(directory.accounts())
        )
        task = asyncio.create_task(follower.run(stop), name="api-config-follower")
        yield ApiContext(
            store=store,
            directory=directory,
            config_publisher=ConfigWriter(producer, settings.accounts_topic),
            events=KafkaEvents(producer, settings.events_topic),
            keys=KeyRing(store, cache_s=config.key_cache_s),
            config=config,
        )
    finally:
        stop.set()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for client in reversed(started):
            with contextlib.suppress(Exception):
                await client.stop()  # type: ignore[attr-defined]
        await store.close()


def build_app(settings: Settings, config: ApiConfig) -> Starlette:
    """The application with a lifespan that opens (and closes) everything it needs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(settings, config) as ctx:
            app.state.ctx = ctx
            yield

    return create_app(config=config, lifespan=lifespan)


def main_api(settings: Settings, config: ApiConfig, *, access_log: bool = True) -> None:
    """Entry point of `metering api`: serve on settings.api_host:api_port until SIGTERM.

    Access log lines carry method, path and status only; keys travel in headers, cookies or
    bodies, never in paths or query strings, so they never appear in logs.
    """
    uvicorn.run(
        build_app(settings, config),
        host=settings.api_host,
        port=settings.api_port,
        access_log=access_log,
        server_header=False,
        log_config=None,
    )
