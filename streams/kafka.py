"""Kafka clients built from `Settings`, and the translation of aiokafka errors.

Shared by `streams/` and `sinks/`: one place decides security settings, idempotence and
client ids, and one place turns `aiokafka.errors.*` into `StreamError`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    BrokerNotAvailableError,
    ConsumerStoppedError,
    IllegalOperation,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RebalanceInProgressError,
    RecordListTooLargeError,
    RecordTooLargeError,
    ReplicaNotAvailableError,
)

from metering.core.errors import (
    NotPositioned,
    PositionOutOfRange,
    RecordRejected,
    StreamError,
    StreamUnavailable,
)
from metering.settings import Settings

SIDE_OUTPUT_MAX_BYTES = 1024 * 1024
"""The largest request our producers send (aiokafka's `max_request_size`, Kafka's default);
`metering topics create` lets the side topics take records this large (streams/topics.py)."""

ALSO_RETRIABLE: tuple[type[KafkaError], ...] = (
    KafkaTimeoutError,  # a request that timed out on our side
    KafkaUnavailableError,  # no broker answered
    BrokerNotAvailableError,  # a broker restarting
    ReplicaNotAvailableError,  # a replica catching up
    RebalanceInProgressError,  # the group settles, then the call succeeds
)
"""Transient by nature although aiokafka does not flag them `retriable`."""

RECORD_REJECTED: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,  # larger than max_request_size, or the topic's max.message.bytes
    RecordTooLargeError,
    RecordListTooLargeError,
)
"""Refusals of one record for what it is: retrying it cannot help."""


def translate(exc: BaseException, what: str) -> StreamError:
    """Our error for an aiokafka error: retriable ones (aiokafka's own `retriable` or
    `invalid_metadata` flag, or `ALSO_RETRIABLE`) become `StreamUnavailable`, which callers
    retry; the refusal of one record `RecordRejected`; a fetch position outside the log
    `PositionOutOfRange`; a partition without a position `NotPositioned`; the rest
    `StreamError`."""
    if isinstance(exc, OffsetOutOfRangeError):
        positions = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        return PositionOutOfRange(
            f"{what}: position out of range: {exc}",
            {(tp.topic, tp.partition): int(offset) for tp, offset in positions.items()},
        )
    if isinstance(exc, NoOffsetForPartitionError):
        tps = [tp for tp in exc.args if isinstance(tp, TopicPartition)]
        return NotPositioned(
            f"{what}: no position yet: {exc}", [(tp.topic, tp.partition) for tp in tps]
        )
    if isinstance(exc, RECORD_REJECTED):
        return RecordRejected(f"Kafka refused a record during {what}: {exc!r}")
    if isinstance(exc, KafkaError) and (
        exc.retriable or exc.invalid_metadata or isinstance(exc, ALSO_RETRIABLE)
    ):
        return StreamUnavailable(f"Kafka unavailable during {what}: {exc!r}")
    return StreamError(f"Kafka refused {what}: {exc!r}")


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection and security options common to producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def new_producer(settings: Settings, *, client_id: str, linger_ms: int = 5) -> AIOKafkaProducer:
    """An idempotent producer (acks=all): a retried send never writes a record twice."""
    return AIOKafkaProducer(
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
        max_request_size=SIDE_OUTPUT_MAX_BYTES,
        **client_options(settings),
    )


def new_transactional_producer(
    settings: Settings, *, client_id: str, transactional_id: str
) -> AIOKafkaProducer:
    """A transactional producer: its sends become visible to `read_committed` readers only
    when its transaction commits, all or none; starting it fences any older producer with
    the same `transactional_id` (its open transaction is aborted)."""
    return AIOKafkaProducer(
        client_id=client_id,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=SIDE_OUTPUT_MAX_BYTES,
        **client_options(settings),
    )


def new_consumer(
    settings: Settings,
    *,
    group_id: str | None,
    client_id: str,
    auto_offset_reset: str = "earliest",
    **extra: Any,
) -> AIOKafkaConsumer:
    """A consumer with auto-commit off: positions live in Redis (see streams/processor.py).

    `auto_offset_reset="none"` makes a position outside the log an error (`getmany` raises,
    `translated` makes it `PositionOutOfRange`) instead of a silent jump."""
    return AIOKafkaConsumer(
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        **client_options(settings),
        **extra,
    )


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Translate aiokafka errors raised inside the block into our own types."""
    try:
        yield
    except (KafkaError, ConsumerStoppedError, IllegalOperation) as exc:
        raise translate(exc, what) from exc


@asynccontextmanager
async def started(*clients: AIOKafkaProducer | AIOKafkaConsumer) -> AsyncIterator[None]:
    """Start the clients in order; on exit stop the started ones in reverse order, each
    bounded to 5 s, so SIGTERM always ends the process (a consumer leaving a group that is
    rebalancing can wait on its coordinator; positions are in Redis already)."""
    running: list[AIOKafkaProducer | AIOKafkaConsumer] = []
    try:
        async with translated("start Kafka clients"):
            for client in clients:
                running.append(client)  # stopped even when its start fails: no "Unclosed" noise
                await client.start()
        yield
    finally:
        for client in reversed(running):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), 5)


async def end_offsets(
    consumer: AIOKafkaConsumer, topic: str, partitions: Sequence[int]
) -> dict[int, int]:
    """The end offsets (next offset to be written) of these partitions of `topic`; the
    consumer needs no assignment (the period closer asks with its configuration consumer)."""
    tps = [TopicPartition(topic, p) for p in partitions]
    if not tps:
        return {}
    async with translated(f"read end offsets of {topic}"):
        ends = await consumer.end_offsets(tps)
    return {tp.partition: int(offset) for tp, offset in ends.items()}
