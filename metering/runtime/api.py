"""Runs the API process: Redis, a Kafka producer, the accounts-topic follower, uvicorn.

The API follows the compacted accounts topic with the same `ConfigFollower` and `Directory`
as the processors, so both read one configuration; it catches up before serving, so a fresh
API process never answers with a configuration older than what was published before it
started. Admin changes go out through `ConfigWriter`; SMS top-ups through the producer to the
events topic. A third client, outside any group, reads the events topic's offsets for the
freshness of usage answers and `GET /v1/wait` (metering/api/freshness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from starlette.applications import Starlette

from metering.api.app import create_app
from metering.api.auth import KeyRing
from metering.api.context import ApiConfig, ApiContext
from metering.api.deadline import BoundedConfig, BoundedEvents, within
from metering.api.freshness import Freshness
from metering.api.http_protocol import ProblemHttpToolsProtocol
from metering.api.request_id import RequestIdFilter
from metering.core.api_keys import KeyRecord
from metering.core.directory import Directory
from metering.core.errors import ConfigError, StreamError, StreamUnavailable
from metering.core.partitioning import ACCOUNT_PARTITIONER
from metering.runtime.process import freeze_startup_heap
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from streams.config_follower import ConfigFollower, ConfigMetrics
from streams.kafka import client_options, new_consumer, translated
from streams.log_ranges import KafkaLogRanges

log = logging.getLogger(__name__)


class KafkaEvents:
    """Produces usage events to the events topic, keyed by account (the processor's order)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, account: str, value: bytes) -> None:
        async with translated(f"produce to {self._topic}"):
            await self._producer.send_and_wait(self._topic, value=value, key=account.encode())


class BoundedKeys:
    """Writes API key records (revocations when an account is deleted) within the deadline."""

    def __init__(self, inner: ConfigWriter, timeout_s: float) -> None:
        self._inner = inner
        self._timeout = timeout_s

    async def put_api_key(self, digest: str, record: KeyRecord) -> None:
        await within(self._timeout, f"API key {record.id}", self._inner.put_api_key(digest, record))


def bounded_producer(settings: Settings, *, client_id: str) -> AIOKafkaProducer:
    """The API's producer: a record it could not deliver within the write deadline is dropped,
    not delivered whenever Kafka comes back.

    Unlike `streams.kafka.new_producer`, idempotence is off: aiokafka's idempotent producer
    retries a batch forever, so a change the caller was told had failed (503) would still be
    applied minutes later, after the caller may have given up or changed their mind. Without
    it, `request_timeout_ms` also ends a batch's life: one not acknowledged within the deadline
    fails at its next attempt. What idempotence would have prevented, a retried batch written
    twice, cannot hurt here: every record the API writes has the same effect however often it
    lands (metering/api/deadline.py). `acks=all` as everywhere; no linger (one record a call).
    The partitioner is the SDK's (`metering.core.partitioning`): a top-up and the account's
    usage events land on one partition, in one order.
    """
    return AIOKafkaProducer(
        client_id=client_id,
        enable_idempotence=False,
        acks="all",
        linger_ms=0,
        request_timeout_ms=settings.api_kafka_write_timeout_ms,
        partitioner=ACCOUNT_PARTITIONER,  # murmur2 of the account, as the SDK (docs/asyncapi.yaml)
        **client_options(settings),
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    config: ApiConfig,
    *,
    registry: CollectorRegistry | None = None,
    on_follower_failure: Callable[[BaseException], None] | None = None,
) -> AsyncIterator[ApiContext]:
    """Open Redis and Kafka, catch up with the configuration, follow it; close all on exit.

    `on_follower_failure` is called if the configuration follower stops on an error (the
    process should stop: `main_api` then exits non-zero); the follower's counters go on
    `registry`. Every Kafka write of a request, and each Kafka client's start, is bounded by
    `settings.api_kafka_write_timeout_ms` (metering/api/deadline.py): aiokafka's own waits
    (metadata, buffer room, acknowledgement) last up to 40 s each.
    """
    timeout_s = settings.api_kafka_write_timeout_ms / 1000
    for name in ("api_idempotency_ttl_s", "api_events_per_s", "api_events_burst"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"METERING_{name.upper()}", "must be at least 1")
    config = replace(
        config,
        idempotency_ttl_s=settings.api_idempotency_ttl_s,
        events_per_s=settings.api_events_per_s,
        events_burst=settings.api_events_burst,
        hold_ttl_s=settings.hold_ttl_s,
    )
    client_id = f"metering-api-{socket.gethostname()}-{os.getpid()}"
    store = RedisStateStore.for_api(settings.redis_url)
    producer = bounded_producer(settings, client_id=client_id)
    consumer = new_consumer(settings, group_id=None, client_id=f"{client_id}-config")
    # Outside any group and never fetching: reads the events topic's offsets (freshness).
    offsets = new_consumer(settings, group_id=None, client_id=f"{client_id}-offsets")
    directory = Directory()
    metrics = ConfigMetrics.create(registry or CollectorRegistry())
    follower = ConfigFollower(consumer, settings.accounts_topic, directory, metrics)
    stop = asyncio.Event()
    started: list[object] = []
    task: asyncio.Task[None] | None = None
    try:
        await store.ping()
        async with translated("start Kafka clients"):
            # Both are stopped on the way out, even one whose start failed or never began.
            started.extend((producer, consumer, offsets))
            for client in (producer, consumer, offsets):
                try:
                    async with asyncio.timeout(timeout_s):
                        await client.start()
                except TimeoutError:
                    raise StreamUnavailable(
                        f"Kafka at {settings.kafka_bootstrap} did not answer within "
                        f"{timeout_s:g} s (METERING_API_KAFKA_WRITE_TIMEOUT_MS)"
                    ) from None
        applied = await follower.catch_up()
        log.info(
            "configuration loaded: %d records, %d accounts", applied, len(directory.accounts())
        )
        keys = KeyRing(
            store,
            directory=directory,
            publisher=BoundedKeys(ConfigWriter(producer, settings.accounts_topic), timeout_s),
            cache_s=config.key_cache_s,
        )
        stranded = await keys.unmigrated()
        if stranded:
            log.warning(
                "%d API keys are only in Redis (%s): they work, but a Redis loss would lose "
                "them; run `metering api-keys migrate` once (docs/api.md, Where keys live)",
                len(stranded),
                ", ".join(sorted(r.id for r in stranded.values())[:10]),
            )
        task = asyncio.create_task(follower.run(stop), name="api-config-follower")

        def follower_done(_: asyncio.Task[None]) -> None:
            if follower.failure is not None and on_follower_failure is not None:
                on_follower_failure(follower.failure)

        task.add_done_callback(follower_done)
        yield ApiContext(
            store=store,
            directory=directory,
            config_publisher=BoundedConfig(
                ConfigWriter(producer, settings.accounts_topic), timeout_s
            ),
            events=BoundedEvents(KafkaEvents(producer, settings.events_topic), timeout_s),
            keys=keys,
            config=config,
            freshness=Freshness(
                store,
                KafkaLogRanges(producer, offsets, settings.events_topic),
                group=settings.consumer_group,
                topic=settings.events_topic,
            ),
            tasks=[task],
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


def tune_gc() -> None:
    """Move everything start-up built (libraries, plans, accounts, routes) out of the cyclic
    garbage collector's reach, once the API is ready to serve.

    Without it, each full (generation 2) collection traverses that whole long-lived heap while
    every request waits: about 51,000 objects, 22 to 24 ms a collection on the development
    machine (the admission benchmark's server logged one of 24 ms), against a 5 ms p99 target;
    frozen, under 0.01 ms (docs/benchmarks.md). Frozen objects are never traversed again;
    memory is still freed by reference counting, and cycles made after start-up are still
    collected. Thresholds stay at their defaults: a request leaves few container objects behind
    (5 to 8 young collections of at most 0.5 ms in 8,000 requests), so only full collections
    were worth removing.
    """
    freeze_startup_heap()


def build_app(
    settings: Settings,
    config: ApiConfig,
    *,
    gc_tuning: bool = False,
    on_follower_failure: Callable[[BaseException], None] | None = None,
) -> Starlette:
    """The application with a lifespan that opens (and closes) everything it needs.

    Its `/metrics` also carries the standard `process_*` and `python_info` series, as the
    processor's endpoint does, so the dashboard can show the API's memory and CPU.
    `gc_tuning` freezes the start-up heap (`tune_gc`) once the configuration is loaded: for the
    API process, not for tests that build apps in their own process.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(
            settings, config, registry=registry, on_follower_failure=on_follower_failure
        ) as ctx:
            app.state.ctx = ctx
            if gc_tuning:
                tune_gc()
            yield

    return create_app(config=config, lifespan=lifespan, registry=registry)


def server_options() -> dict[str, Any]:
    """uvicorn options of the API's HTTP server (also used by the tests' real server).

    - `http`: httptools (what "auto" picks when installed, a dependency; named so that a
      missing one fails at start instead of silently halving the admission capacity), in
      the subclass whose parser-level 400s are problem documents (http_protocol.py);
    - `ws="none"`: the API serves no WebSocket, so an `Upgrade: websocket` request is an
      ordinary request (uvicorn would otherwise answer it with a bare plain-text 403);
    - `loop="uvloop"`, no `Server` header.
    """
    return {
        "http": ProblemHttpToolsProtocol,
        "ws": "none",
        "loop": "uvloop",
        "server_header": False,
    }


def main_api(settings: Settings, config: ApiConfig, *, access_log: bool = False) -> None:
    """Entry point of `metering api`: serve on settings.api_host:api_port until SIGTERM.

    The access log is off unless asked for (`--access-log`): a line per request cost 90 to 160
    µs of CPU per admission request in the benchmark (about a sixth of the server's CPU), and
    `/metrics` counts requests by route and status. Its lines carry method, path and status
    only; keys travel in headers, cookies or bodies, never in paths or query strings, so they
    never appear in logs.
    """
    failures: list[BaseException] = []
    # Every line logged while serving a request names it (`request_id`; metering/api/request_id.py).
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())

    def follower_failed(exc: BaseException) -> None:
        failures.append(exc)
        server.should_exit = True  # graceful shutdown, then exit non-zero below

    app = build_app(settings, config, gc_tuning=True, on_follower_failure=follower_failed)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            access_log=access_log,
            log_config=None,
            **server_options(),
        )
    )
    server.run()
    if failures:
        raise StreamError(f"the configuration follower stopped: {failures[0]!r}")
    if not server.started:
        raise StreamError("the API did not start (see the errors above)")
