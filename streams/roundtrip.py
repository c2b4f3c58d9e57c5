"""Round trip through the local stack: produce -> consume in a group -> Redis -> read back.

What `deploy/demo` runs until the usage processor exists (`python -m streams.roundtrip`).
It shows that the pieces the processor will stand on work together on this machine:

1. an idempotent producer (``enable_idempotence=True``) writes a few usage events
   (schema v1 of ADR 0001, record key = account) to a 3-partition topic;
2. a consumer in a consumer group (auto-commit off) reads them in batches;
3. per batch, the counts per account go to Redis in one pipeline, and only after Redis
   answered are the batch's offsets committed to Kafka (side effect first, then the commit);
4. the counters are read back from Redis and compared with what was produced.

Temporary: ADR 0001 keeps Redis to ``metering/state/redis_store.py``; this demo talks to Redis
directly and under its own key prefix (``demo:``) until the processor and state store land.

Settings (environment): ``METERING_KAFKA_BOOTSTRAP`` (default ``127.0.0.1:19092``) and
``METERING_REDIS_URL`` (default ``redis://127.0.0.1:16379/0``), printed by
``deploy/local/stack.sh env``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

TOPIC = "metering.demo.roundtrip"
GROUP = "metering-demo-roundtrip"
PARTITIONS = 3
KEY_TTL_S = 86_400
# Three accounts whose keys hash to three different partitions (murmur2, 3 partitions).
EVENTS_PER_ACCOUNT = {"acct-42": 4, "acct-7": 3, "acct-beta": 2}


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the demo finds the stack."""

    kafka_bootstrap: str
    """``host:port`` of a Kafka broker."""
    redis_url: str
    """``redis://host:port/db``."""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            kafka_bootstrap=os.environ.get("METERING_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            redis_url=os.environ.get("METERING_REDIS_URL", "redis://127.0.0.1:16379/0"),
        )


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def counter_key(account: str, run: str) -> str:
    """Demo counter of e-mails sent by ``account`` in this run (hash tag = account)."""
    return f"demo:{{{account}}}:c:email.sent:{run}"


def make_events(run: str) -> list[tuple[str, bytes]]:
    """(account, encoded event) pairs, schema v1; the event id carries the run id."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = []
    for account, count in EVENTS_PER_ACCOUNT.items():
        for i in range(count):
            event = {
                "specversion": "1.0",
                "id": f"demo-{run}-{account}-{i}",
                "source": "demo/roundtrip",
                "type": "email.sent",
                "subject": account,
                "time": now,
                "dataschema": "metering/v1",
                "data": {"contact": f"c-{i}", "kind": "marketing", "run": run},
            }
            events.append((account, orjson.dumps(event)))
    return events


async def ensure_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
        for topic, code, *_ in response.topic_errors:
            if code and for_code(code) is not TopicAlreadyExistsError:
                raise for_code(code)(f"could not create topic {topic}")
    finally:
        await admin.close()


async def produce(bootstrap: str, events: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        pending = [
            await producer.send(TOPIC, value, key=account.encode()) for account, value in events
        ]
        for (account, _), fut in zip(events, pending, strict=True):
            meta = await fut
            say(f"  produced  {account}  -> partition {meta.partition} offset {meta.offset}")
    finally:
        await producer.stop()


async def consume_into_redis(
    settings: Settings, redis: aioredis.Redis, run: str, expected: int
) -> None:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"consumed {seen} of {expected} events in 30 s")
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                continue
            counts: Counter[str] = Counter()
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["data"].get("run") == run:  # older runs' events: not ours
                        counts[event["subject"]] += 1
                offsets[tp] = records[-1].offset + 1
            # Side effect first (one pipeline = one round trip), then the Kafka commit.
            async with redis.pipeline(transaction=True) as pipe:
                for account, n in counts.items():
                    pipe.incrby(counter_key(account, run), n)
                    pipe.expire(counter_key(account, run), KEY_TTL_S)
                await pipe.execute()
            await consumer.commit(offsets)
            seen += sum(counts.values())
            where = ", ".join(f"p{tp.partition}@{off}" for tp, off in sorted(offsets.items()))
            say(
                f"  consumed  batch of {sum(counts.values())} in group {GROUP!r}; "
                f"Redis written, committed {where}"
            )
        say(
            f"  group {GROUP!r}: assigned partitions "
            f"{sorted(tp.partition for tp in consumer.assignment())}"
        )
    finally:
        await consumer.stop()


async def run(settings: Settings) -> bool:
    run_id = uuid.uuid4().hex[:8]
    events = make_events(run_id)
    started = time.perf_counter()
    say(f"round trip {run_id}: Kafka {settings.kafka_bootstrap}, Redis {settings.redis_url}")
    await ensure_topic(settings.kafka_bootstrap)
    say(f"1. produce {len(events)} events to {TOPIC!r} (idempotent producer)")
    await produce(settings.kafka_bootstrap, events)
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=False)
    try:
        say("2. consume in a consumer group, write counts to Redis, then commit offsets")
        await consume_into_redis(settings, redis, run_id, len(events))
        say("3. read the counters back from Redis")
        ok = True
        for account, expected in EVENTS_PER_ACCOUNT.items():
            raw = await redis.get(counter_key(account, run_id))
            got = int(raw) if raw is not None else 0
            ok = ok and got == expected
            mark = "ok" if got == expected else "MISMATCH"
            say(f"  {counter_key(account, run_id)} = {got} (produced {expected}) {mark}")
    finally:
        await redis.aclose()
    elapsed_ms = (time.perf_counter() - started) * 1000
    say(f"round trip {'OK' if ok else 'FAILED'} in {elapsed_ms:.0f} ms")
    return ok


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  (log) %(levelname)s %(name)s: %(message)s")
    return 0 if asyncio.run(run(Settings.from_env())) else 1


if __name__ == "__main__":
    sys.exit(main())
