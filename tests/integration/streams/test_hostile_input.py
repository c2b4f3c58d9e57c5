"""Hostile input on the Kafka side, each class through the real path (real Kafka, real Redis,
a real processor; kcat where the input comes from a non-Python producer):

- record batches compressed with every codec Kafka offers, by kcat and by aiokafka's producer,
  are read and counted exactly;
- a record near the broker's size limit is dead-lettered as a summary (first bytes, size,
  SHA-256, source, reason) and the partition moves on; a smaller oversized one goes whole;
- a stored position below the log start (retention deleted records not applied yet) stops the
  processor with StateLost naming the lost range, or, with `accept_lost_records`, is skipped,
  logged and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry

from metering.cli.main import build_parser
from metering.core.deltas import Aggregation
from metering.core.errors import StateLost
from metering.core.periods import PeriodKind, period_of
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.side_outputs import SUMMARY_VALUE_BYTES
from streams.kafka import SIDE_OUTPUT_MAX_BYTES
from streams.topics import ensure_topics
from tests.integration.harness import (
    TopicFactory,
    caught_up,
    encoded,
    env_of,
    event,
    make_settings,
    now_ms,
    produce,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TOPIC_FIELDS = [
    "events",
    "dead_letter",
    "late",
    "thresholds",
    "statements",
    "tiers",
    "reminders",
    "accounts",
    "publisher_progress",
]


@asynccontextmanager
async def processor(settings: Settings) -> AsyncIterator[CollectorRegistry]:
    registry = CollectorRegistry()
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=registry))
    try:
        yield registry
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    return await make_settings(kafka_bootstrap, redis_url, topic_factory)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(settings.redis_url)
    yield s
    await s.close()


def month_of(ms: int) -> str:
    return period_of(PeriodKind.CALENDAR_MONTH, ms, "UTC").key


async def emails(store: RedisStateStore, account: str, month: str) -> int:
    amounts = await store.read_amounts(account, [("emails", month, Aggregation.COUNT)])
    return amounts.get(("emails", month), 0)


def kcat_produce(settings: Settings, codec: str, lines: list[bytes]) -> None:
    """Produce `key<TAB>value` lines with kcat, batches compressed with `codec`, partitioned
    like Kafka's Java client (murmur2), as a non-Python producer would."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing: deploy/test installs it (deploy/lib.sh ensure_kcat)"
    subprocess.run(
        [
            kcat, "-P", "-b", settings.kafka_bootstrap, "-t", settings.events_topic,
            "-K", "\t", "-z", codec, "-X", "partitioner=murmur2_random",
        ],
        input=b"\n".join(lines) + b"\n",
        check=True,
        timeout=60,
    )  # fmt: skip


async def aiokafka_produce(settings: Settings, codec: str, docs: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(settings.events_topic, key=k, value=v) for k, v in encoded(docs)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_every_compression_codec_is_read_and_counted_exactly(
    settings: Settings, store: RedisStateStore
) -> None:
    accounts = [f"{tool}-{codec}" for tool in ("kcat", "aiokafka") for codec in CODECS]
    await publish_config(settings, [{"id": a, "plan": "it-plan"} for a in accounts])
    t = now_ms()
    per_account = 60
    for codec in CODECS:
        docs = [
            event(f"kcat-{codec}", "email.sent", contact=f"c{i}", kind="marketing")
            for i in range(per_account)
        ]
        kcat_produce(settings, codec, [k + b"\t" + v for k, v in encoded(docs)])  # type: ignore[operator]
        docs = [
            event(f"aiokafka-{codec}", "email.sent", contact=f"c{i}", kind="marketing")
            for i in range(per_account)
        ]
        await aiokafka_produce(settings, codec, docs)
    async with processor(settings) as registry:
        await wait_until(lambda: caught_up(settings, store), what="processor to catch up")
        assert registry.get_sample_value("metering_events_applied_total") == len(accounts) * 60
    month = month_of(t)
    assert {a: await emails(store, a, month) for a in accounts} == dict.fromkeys(
        accounts, per_account
    )


async def test_a_record_near_the_broker_limit_is_dead_lettered_as_a_summary(
    settings: Settings, store: RedisStateStore
) -> None:
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    # Accepted by the broker at its defaults (message.max.bytes 1048588), but with the
    # dead-letter headers added it exceeds the producer's 1 MiB request limit.
    huge = b'{"pad": "' + b"x" * 1_048_400 + b'"}'
    big = b'{"pad": "' + b"y" * 200_000 + b'"}'  # oversized, but fits a side output whole
    before = [event("acme", "email.sent", contact=f"b{i}", kind="marketing") for i in range(5)]
    after = [event("acme", "email.sent", contact=f"a{i}", kind="marketing") for i in range(5)]
    # One partition's order: valid, huge, big, valid.
    records = [
        *encoded(before),
        (b"acme", huge),
        (b"acme", big),
        *encoded(after),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.events_topic, key=key, value=value, partition=0)
    finally:
        await producer.stop()
    async with processor(settings) as registry:
        await wait_until(lambda: caught_up(settings, store), what="processor to catch up")
        assert registry.get_sample_value("metering_events_applied_total") == 10
        assert registry.get_sample_value("metering_dead_letters_truncated_total") == 1
    assert await emails(store, "acme", month_of(now_ms())) == 10
    dead = await read_topic(settings, settings.dead_letter_topic, expect=2)
    assert len(dead) == 2
    by_source = {dict(r.headers)["source"]: r for r in dead}
    summary = by_source[f"{settings.events_topic}/0/5".encode()]
    headers = dict(summary.headers)
    assert headers["reason"] == b"oversized"
    assert headers["summary"] == b"true"
    assert headers["original-size"] == str(len(huge)).encode()
    assert headers["original-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert headers["intended-topic"] == settings.dead_letter_topic.encode()
    assert summary.value == huge[:SUMMARY_VALUE_BYTES]
    assert summary.key == b"acme"
    whole = by_source[f"{settings.events_topic}/0/6".encode()]
    assert whole.value == big
    assert "summary" not in dict(whole.headers)


async def _delete_records_before(bootstrap: str, tp: TopicPartition, offset: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        result = await admin.delete_records({tp: RecordsToDelete(offset)})
    finally:
        await admin.close()
    return int(result[tp])


async def _end_offset(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_a_position_below_the_log_start_is_refused_or_accepted_and_counted(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, store: RedisStateStore
) -> None:
    settings = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=1)
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    month = month_of(now_ms())

    def batch(tag: str, n: int) -> list[tuple[bytes | None, bytes | None]]:
        return encoded(
            event("acme", "email.sent", contact=f"{tag}{i}", kind="marketing") for i in range(n)
        )

    await produce(settings, batch("a", 50))
    async with processor(settings):
        await wait_until(lambda: caught_up(settings, store), what="first catch-up")
    # The processor is stopped (behind); 50 more arrive and retention deletes 30 of them.
    await produce(settings, batch("b", 50))
    tp = TopicPartition(settings.events_topic, 0)
    assert await _end_offset(kafka_bootstrap, tp) == 100
    assert await _delete_records_before(kafka_bootstrap, tp, 80) == 80

    registry = CollectorRegistry()
    with pytest.raises(StateLost, match=r"/0: records 50\.\.79 \(30\) were deleted by retention"):
        await asyncio.wait_for(run_until_stopped(settings, asyncio.Event(), registry=registry), 90)
    assert (
        registry.get_sample_value("metering_positions_out_of_range_total", {"partition": "0"}) == 1
    )
    # The same refusal from `metering processor`: exit status 2, the range on stderr.
    refused = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metering.cli",
        "processor",
        env=env_of(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(refused.communicate(), 120)
    assert refused.returncode == 2
    assert b"records 50..79 (30) were deleted by retention" in stderr
    assert b"--accept-lost-records" in stderr
    assert await emails(store, "acme", month) == 50  # nothing skipped silently

    accepting = replace(settings, accept_lost_records=True)
    async with processor(accepting) as registry:
        await wait_until(lambda: caught_up(settings, store), what="catch-up after the loss")
        assert registry.get_sample_value("metering_records_lost_total", {"partition": "0"}) == 30
    assert await emails(store, "acme", month) == 70
    positions = await store.positions(settings.consumer_group, settings.events_topic, [0])
    assert positions[0][0] == 99


async def test_topics_create_lets_side_topics_take_what_the_producer_sends(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient
) -> None:
    stem = f"test.topics-create.{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        **{f"{name}_topic": f"{stem}.{name}" for name in TOPIC_FIELDS},  # type: ignore[arg-type]
        events_partitions=1,
    )
    created = await ensure_topics(settings)
    try:
        assert sorted(created) == sorted(f"{stem}.{name}" for name in TOPIC_FIELDS)
        side = [settings.dead_letter_topic, settings.late_topic]
        limits: dict[str, str] = {}

        async def described() -> bool:
            # Right after creation a broker may not know the topics yet (an error, no entries).
            response = await kafka_admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in side]
            )
            for result in response:
                for error, _, _, name, entries, *_ in result.resources:
                    limit = {e[0]: e[1] for e in entries}.get("max.message.bytes")
                    if error or limit is None:
                        return False
                    limits[name] = limit
            return True

        await wait_until(described, timeout_s=30, what="topic configs")
        assert limits == dict.fromkeys(side, str(SIDE_OUTPUT_MAX_BYTES))
    finally:
        await kafka_admin.delete_topics(created)


def test_the_cli_flag_accepts_lost_records() -> None:
    """`metering processor --accept-lost-records` sets what METERING_ACCEPT_LOST_RECORDS sets."""
    args = build_parser().parse_args(["processor", "--accept-lost-records"])
    assert args.accept_lost_records
    assert not build_parser().parse_args(["processor"]).accept_lost_records
    assert Settings.from_env({"METERING_ACCEPT_LOST_RECORDS": "true"}).accept_lost_records


async def test_a_side_output_the_broker_refuses_still_reaches_the_dead_letter_topic(
    settings: Settings, store: RedisStateStore, kafka_admin: AIOKafkaAdminClient
) -> None:
    """A dead-letter topic whose own limit (100 KB) is below the 200 KB record forwarded to it:
    the broker refuses the whole record for good, its summary gets in, the partition goes on."""
    small = f"test.small-dead-letters.{uuid.uuid4().hex[:8]}"
    await kafka_admin.create_topics(
        [NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "100000"})]
    )
    try:
        settings = replace(settings, dead_letter_topic=small)
        await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
        big = b'{"pad": "' + b"y" * 200_000 + b'"}'
        docs = [event("acme", "email.sent", contact=f"c{i}", kind="marketing") for i in range(3)]
        records = [*encoded(docs[:1]), (b"acme", big), *encoded(docs[1:])]
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(
                    settings.events_topic, key=key, value=value, partition=0
                )
        finally:
            await producer.stop()
        async with processor(settings) as registry:
            await wait_until(lambda: caught_up(settings, store), what="processor to catch up")
            assert registry.get_sample_value("metering_events_applied_total") == 3
            assert registry.get_sample_value("metering_dead_letters_truncated_total") == 1
        dead = await read_topic(settings, small, expect=1)
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert headers["reason"] == b"oversized"
        assert headers["summary"] == b"true"
        assert b"MessageSizeTooLarge" in headers["summary-error"]
        assert headers["source"] == f"{settings.events_topic}/0/1".encode()
        assert headers["original-sha256"] == hashlib.sha256(big).hexdigest().encode()
        assert dead[0].value == big[:SUMMARY_VALUE_BYTES]
    finally:
        await kafka_admin.delete_topics([small])
