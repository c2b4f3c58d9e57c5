"""Helpers for processor integration tests: topics, settings, events, topic reads, waiting.

Tests build a `Settings` whose topics are unique to the test (created through the
`topic_factory` fixture), publish the test plan and accounts, produce events, run processors
(in-process or as `python -m metering.cli processor` subprocesses) and compare Redis with a
ground truth computed independently, in plain Python, from the events they produced.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from metering.core.account_codec import account_from_json
from metering.core.rfc3339 import format_ms
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter

PLAN_FILE = Path(__file__).parent / "plans" / "it-plan.toml"
REPO = Path(__file__).resolve().parents[2]


class TopicFactory(Protocol):
    async def __call__(self, partitions: int = 1) -> str: ...


async def make_settings(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, *, partitions: int = 3
) -> Settings:
    """Settings with fresh topics and a fresh consumer group."""
    return Settings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        events_topic=await topic_factory(partitions),
        dead_letter_topic=await topic_factory(1),
        late_topic=await topic_factory(1),
        thresholds_topic=await topic_factory(1),
        accounts_topic=await topic_factory(1),
        publisher_progress_topic=await topic_factory(1),
        publisher_transactional_id=f"it-publisher-{uuid.uuid4().hex[:8]}",
        consumer_group=f"it-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        grace_s=3600,
        kafka_session_timeout_ms=6_000,
    )


def env_of(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess these settings."""
    return {**os.environ, **settings.to_env()}


async def publish_config(settings: Settings, accounts: Iterable[dict[str, Any]]) -> None:
    """Publish the test plan and these accounts to the accounts topic."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        await writer.put_plan("it-plan", PLAN_FILE.read_text(), PLAN_FILE.name)
        for doc in accounts:
            await writer.put_account(account_from_json(doc))
    finally:
        await producer.stop()


def event(
    account: str,
    event_type: str,
    *,
    event_id: str | None = None,
    time_ms: int | None = None,
    **data: Any,
) -> dict[str, Any]:
    """A CloudEvents usage event document."""
    return {
        "specversion": "1.0",
        "id": event_id or uuid.uuid4().hex,
        "source": "tests",
        "type": event_type,
        "subject": account,
        "time": format_ms(time_ms if time_ms is not None else now_ms()),
        "data": data,
    }


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def produce(settings: Settings, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    """Produce raw (key, value) records to the events topic; returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=10, enable_idempotence=True
    )
    await producer.start()
    count = 0
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(settings.events_topic, key=key, value=value))
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


def encoded(docs: Iterable[dict[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(d["subject"].encode(), orjson.dumps(d)) for d in docs]


async def read_topic(settings: Settings, topic: str, *, expect: int, timeout_s: float = 60):  # type: ignore[no-untyped-def]
    """Read a topic from the beginning until `expect` records arrived (or the timeout), with
    `read_committed` as billing reads: messages of aborted transactions are not seen."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    parts = await partitions_of(settings, topic)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in parts])
        found = []
        deadline = time.monotonic() + timeout_s
        while len(found) < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(records)
        # A little longer, to catch records beyond what was expected (duplicates).
        batches = await consumer.getmany(timeout_ms=500)
        for records in batches.values():
            found.extend(records)
        return found
    finally:
        await consumer.stop()


async def partitions_of(settings: Settings, topic: str) -> set[int]:
    """Partition numbers of `topic` (a producer waits for the topic's metadata)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        return set(await producer.partitions_for(topic))
    finally:
        await producer.stop()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 90, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


async def caught_up(settings: Settings, store: RedisStateStore) -> bool:
    """True when the stored positions reached the end of every events partition."""
    parts = sorted(await partitions_of(settings, settings.events_topic))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(settings.events_topic, p) for p in parts])
    finally:
        await consumer.stop()
    stored = await store.positions(settings.consumer_group, settings.events_topic, parts)
    return all(
        end == 0 or (p in stored and stored[p][0] + 1 >= end)
        for p, end in ((tp.partition, e) for tp, e in ends.items())
    )


async def outboxes_drained(store: RedisStateStore) -> bool:
    """True when no account has crossings waiting (a crashed publisher's claim expires after
    10 s, so crossings decided just before a SIGKILL are published by the next processor)."""
    return not await store.sweep_outboxes()


@dataclass
class ProcessorProcess:
    """A processor running as `python -m metering.cli processor`."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, settings: Settings, log: Path, **overrides: Any) -> ProcessorProcess:
        env = env_of(replace(settings, **overrides))
        handle = log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "metering.cli", "processor"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        handle.close()
        return cls(proc, log)

    async def ready(self, timeout_s: float = 60) -> None:
        """Wait until the processor has caught up with its configuration and subscribed."""

        async def running() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"processor exited: {self.log.read_text()[-3000:]}")
            return b"processor running" in self.log.read_bytes()

        await wait_until(running, timeout_s=timeout_s, what="processor start")

    def stop_if_running(self) -> None:
        """Kill the process if a failed test left it running (no leaked processes)."""
        if self.proc.poll() is None:
            self.kill()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def terminate(self, timeout_s: float = 60) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout=timeout_s)
