"""Dead-letter and late-event outputs: nothing the processor cannot count is lost.

A rejected record goes to the dead-letter topic with its original key and bytes and headers that
say why (`reason`, `field`, `detail`) and where it came from (`source`: topic/partition/offset).
A late record goes to the late-events topic the same way. Sends are queued while a batch is
processed and `flush()` awaits every delivery before the processor moves its position forward,
so a crash re-sends (at least once, the same headers) rather than loses.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from metering.core.ports import SourceRef
from streams.kafka import translated


class SideOutputs:
    """Queues dead-letter and late records; `flush` waits until Kafka has them."""

    def __init__(self, producer: AIOKafkaProducer, *, dead_letter_topic: str, late_topic: str):
        self._producer = producer
        self._dead_letter_topic = dead_letter_topic
        self._late_topic = late_topic
        self._pending: list[asyncio.Future[object]] = []

    async def dead_letter(
        self,
        source: SourceRef,
        key: bytes | None,
        value: bytes | None,
        *,
        reason: str,
        field: str | None,
        detail: str,
    ) -> None:
        """Queue a rejected record with its reason."""
        headers = [
            ("reason", reason.encode()),
            ("field", (field or "").encode()),
            ("detail", detail.encode()[:1024]),
            ("source", source.header()),
        ]
        await self._queue(self._dead_letter_topic, key, value, headers)

    async def late(
        self, source: SourceRef, key: bytes | None, value: bytes | None, *, meters: list[str]
    ) -> None:
        """Queue an event whose period had closed (for these meters) when it arrived."""
        headers = [("meters", ",".join(meters).encode()), ("source", source.header())]
        await self._queue(self._late_topic, key, value, headers)

    async def _queue(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> None:
        async with translated(f"send to {topic}"):
            future = await self._producer.send(topic, value=value, key=key, headers=headers)
        self._pending.append(future)

    @property
    def pending(self) -> int:
        """Records queued and not yet flushed."""
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until every queued record is acknowledged by the broker."""
        pending, self._pending = self._pending, []
        if pending:
            async with translated("deliver side outputs"):
                await asyncio.gather(*pending)
