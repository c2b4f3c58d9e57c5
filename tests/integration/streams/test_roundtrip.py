"""aiokafka against our Kafka (4.1.2, KRaft) and redis-py against our Redis, end to end.

What the processor will rely on: an idempotent producer, consumer groups (join, partition
assignment, manual commits, resuming from the committed position) and pipelined Redis writes.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from tests.conftest import TopicFactory

pytestmark = pytest.mark.integration

ACCOUNTS = [f"acct-{i}" for i in range(5)]


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        heartbeat_interval_ms=300,  # rebalances in well under a second
    )


async def _produce(bootstrap: str, topic: str, events: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        # InitProducerId succeeded: the broker gave this producer an id for its sequence numbers.
        assert producer._txn_manager.producer_id >= 0
        futures = [await producer.send(topic, value, key=key.encode()) for key, value in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _consume_into_redis(
    consumer: AIOKafkaConsumer, redis: aioredis.Redis, expected: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Consume `expected` records; per batch: counts to Redis (one pipeline), then commit."""
    seen: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(30):
        while len(seen) < expected:
            batches = await consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            counts: Counter[bytes] = Counter()
            for records in batches.values():
                seen.extend(records)
                counts.update(record.key for record in records)
            async with redis.pipeline(transaction=True) as pipe:
                for key, n in counts.items():
                    pipe.incrby(b"count:" + key, n)
                await pipe.execute()
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
    return seen


async def test_idempotent_produce_group_consume_redis_roundtrip(
    kafka_bootstrap: str, topic_factory: TopicFactory, redis: aioredis.Redis
) -> None:
    topic = await topic_factory(partitions=3)
    events = [
        (ACCOUNTS[i % len(ACCOUNTS)], orjson.dumps({"id": f"e-{i}", "seq": i})) for i in range(50)
    ]
    await _produce(kafka_bootstrap, topic, events)

    consumer = _consumer(kafka_bootstrap, topic, f"group-{topic}")
    await consumer.start()
    try:
        seen = await _consume_into_redis(consumer, redis, len(events))
        assignment = sorted(consumer.assignment())
        committed = {tp: await consumer.committed(tp) for tp in assignment}
        end_offsets = await consumer.end_offsets(assignment)
    finally:
        await consumer.stop()

    assert [tp.partition for tp in assignment] == [0, 1, 2]
    assert committed == end_offsets  # everything consumed is committed, nothing more
    assert sorted(orjson.loads(r.value)["seq"] for r in seen) == list(range(len(events)))
    # One key, one partition, in the order produced.
    partitions: defaultdict[bytes, set[int]] = defaultdict(set)
    order: defaultdict[bytes, list[int]] = defaultdict(list)
    for r in seen:
        partitions[r.key].add(r.partition)
        order[r.key].append(orjson.loads(r.value)["seq"])
    assert all(len(p) == 1 for p in partitions.values())
    assert all(seqs == sorted(seqs) for seqs in order.values())
    expected = Counter(account for account, _ in events)
    for account, n in expected.items():
        assert await redis.get(b"count:" + account.encode()) == str(n).encode()


async def test_group_resumes_after_the_committed_offsets(
    kafka_bootstrap: str, new_topic: str, redis: aioredis.Redis
) -> None:
    group = f"group-{new_topic}"
    await _produce(kafka_bootstrap, new_topic, [("acct-0", b"first")] * 3)
    consumer = _consumer(kafka_bootstrap, new_topic, group)
    await consumer.start()
    try:
        await _consume_into_redis(consumer, redis, 3)
    finally:
        await consumer.stop()

    await _produce(kafka_bootstrap, new_topic, [("acct-0", b"second")] * 2)
    consumer = _consumer(kafka_bootstrap, new_topic, group)
    await consumer.start()
    try:
        again = await _consume_into_redis(consumer, redis, 2)
        assert not await consumer.getmany(timeout_ms=300)  # nothing beyond the two new ones
    finally:
        await consumer.stop()

    assert [(r.offset, r.value) for r in again] == [(3, b"second"), (4, b"second")]
    assert await redis.get(b"count:acct-0") == b"5"


async def test_two_consumers_in_a_group_split_the_partitions(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory(partitions=4)
    group = f"group-{topic}"
    first = _consumer(kafka_bootstrap, topic, group)
    second = _consumer(kafka_bootstrap, topic, group)
    await first.start()
    try:
        await second.start()
        try:
            everything = {TopicPartition(topic, p) for p in range(4)}
            async with asyncio.timeout(30):
                while True:
                    # getmany drives each member's heartbeats and rebalance callbacks.
                    await asyncio.gather(
                        first.getmany(timeout_ms=100), second.getmany(timeout_ms=100)
                    )
                    a, b = first.assignment(), second.assignment()
                    if a and b and not a & b and a | b == everything:
                        break
            assert len(a) == len(b) == 2
        finally:
            await second.stop()
        # The member left: the other one takes over all partitions.
        async with asyncio.timeout(30):
            while first.assignment() != everything:
                await first.getmany(timeout_ms=100)
    finally:
        await first.stop()
