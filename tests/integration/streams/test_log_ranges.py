"""The events topic as the API reads it: the account's partition is where Kafka's default
partitioner put the account's records, and offset ranges are the log's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from metering.core.errors import StreamError
from metering.core.freshness import LogRange
from streams.log_ranges import KafkaLogRanges, partition_for
from tests.integration.harness import TopicFactory

pytestmark = pytest.mark.integration


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await p.start()
    yield p
    await p.stop()


async def ranges_of(kafka_bootstrap: str, topic: str) -> AsyncIterator[KafkaLogRanges]:
    """The adapter on clients of its own (the API gives it its producer)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=3000)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        yield KafkaLogRanges(producer, consumer, topic)
    finally:
        await consumer.stop()
        await producer.stop()


async def test_accounts_land_on_the_partition_the_api_computes(
    kafka_bootstrap: str, topic_factory: TopicFactory, producer: AIOKafkaProducer
) -> None:
    topic = await topic_factory(7)
    accounts = [f"account-{i}" for i in range(40)] + ["acme", "ac-0612", "Zürich"]
    landed = {}
    for account in accounts:
        sent = await producer.send_and_wait(topic, b"{}", key=account.encode())
        landed[account] = sent.partition
    async for log in ranges_of(kafka_bootstrap, topic):
        assert {a: await log.partition_of(a) for a in accounts} == landed
    assert {a: partition_for(a, 7) for a in accounts} == landed
    assert len(set(landed.values())) > 1  # the keys spread: the check is not vacuous


async def test_ranges_are_the_offsets_the_log_holds(
    kafka_bootstrap: str, topic_factory: TopicFactory, producer: AIOKafkaProducer
) -> None:
    topic = await topic_factory(2)
    for _ in range(3):
        await producer.send_and_wait(topic, b"{}", partition=1)
    async for log in ranges_of(kafka_bootstrap, topic):
        assert await log.ranges() == {0: LogRange(0, 0), 1: LogRange(0, 3)}
        assert await log.ranges([1]) == {1: LogRange(0, 3)}


async def test_a_missing_topic_is_named(kafka_bootstrap: str) -> None:
    async for log in ranges_of(kafka_bootstrap, "no-such-topic-for-log-ranges"):
        with pytest.raises(StreamError, match="no-such-topic-for-log-ranges"):
            await log.partition_of("acme")
