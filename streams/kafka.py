"""Kafka clients built from `Settings`, and the translation of aiokafka errors.

Shared by `streams/` and `sinks/`: one place decides security settings, idempotence and
client ids, and one place turns `aiokafka.errors.*` into `StreamError`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from metering.core.errors import StreamError, StreamUnavailable
from metering.settings import Settings


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
        **client_options(settings),
    )


def new_consumer(
    settings: Settings, *, group_id: str | None, client_id: str, **extra: Any
) -> AIOKafkaConsumer:
    """A consumer with auto-commit off: positions live in Redis (see streams/processor.py)."""
    return AIOKafkaConsumer(
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
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
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        raise StreamUnavailable(f"Kafka unavailable during {what}: {exc}") from exc
    except KafkaError as exc:
        raise StreamError(f"Kafka refused {what}: {exc}") from exc


@asynccontextmanager
async def started(*clients: AIOKafkaProducer | AIOKafkaConsumer) -> AsyncIterator[None]:
    """Start the clients in order; on exit stop the started ones in reverse order, each
    bounded to 5 s, so SIGTERM always ends the process (a consumer leaving a group that is
    rebalancing can wait on its coordinator; positions are in Redis already)."""
    running: list[AIOKafkaProducer | AIOKafkaConsumer] = []
    try:
        async with translated("start Kafka clients"):
            for client in clients:
                await client.start()
                running.append(client)
        yield
    finally:
        for client in reversed(running):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), 5)
