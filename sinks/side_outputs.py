"""Dead-letter and late-event outputs: nothing the processor cannot count is lost.

A rejected record goes to the dead-letter topic with its original key and bytes and headers that
say why (`reason`, `field`, `detail`) and where it came from (`source`: topic/partition/offset).
A late record goes to the late-events topic the same way. Sends are queued while a batch is
processed and `flush()` awaits every delivery before the processor moves its position forward,
so a crash re-sends (at least once, the same headers) rather than loses.

No single record can stop the processor: one too large to forward whole (a value near the
broker's limit plus our headers exceeds the producer's request limit), or refused for good by
Kafka for any other reason, is replaced by its *summary* on the dead-letter topic: its first
`SUMMARY_VALUE_BYTES` bytes, its size and SHA-256, the source and the reason (headers listed in
docs/configuration.md). A retriable failure re-sends the record on the next `flush`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from metering.core.errors import StreamError, StreamUnavailable
from metering.core.ports import SourceRef
from streams.kafka import SIDE_OUTPUT_MAX_BYTES, translate

SUMMARY_VALUE_BYTES = 64 * 1024
"""How much of a record's value its summary keeps."""
SUMMARY_KEY_BYTES = 1024
"""How much of a record's key its summary keeps."""
FORWARD_LIMIT = SIDE_OUTPUT_MAX_BYTES - 16 * 1024
"""Key, value and headers larger than this are summarised rather than forwarded whole: below
the producer's request limit with room for the record and batch framing."""


@dataclass(slots=True)
class _Outgoing:
    """One side-output record, kept until Kafka acknowledged it (a retriable failure sends it
    again; a permanent one replaces it with its summary)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    why: tuple[str, str, str]
    """reason, field and detail, for a summary."""
    source: SourceRef
    is_summary: bool = False
    future: asyncio.Future[object] | None = None


class SideOutputs:
    """Queues dead-letter and late records; `flush` waits until Kafka has them."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        dead_letter_topic: str,
        late_topic: str,
        on_summarised: Callable[[], None] = lambda: None,
    ):
        self._producer = producer
        self._dead_letter_topic = dead_letter_topic
        self._late_topic = late_topic
        self._on_summarised = on_summarised
        self._pending: list[_Outgoing] = []

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
        why = (reason, field or "", detail)
        await self._queue(_Outgoing(self._dead_letter_topic, key, value, headers, why, source))

    async def late(
        self, source: SourceRef, key: bytes | None, value: bytes | None, *, meters: list[str]
    ) -> None:
        """Queue an event whose period had closed (for these meters) when it arrived."""
        joined = ",".join(meters)
        headers = [("meters", joined.encode()), ("source", source.header())]
        why = ("late", "", f"late for meters {joined}"[:1024])
        await self._queue(_Outgoing(self._late_topic, key, value, headers, why, source))

    async def _queue(self, item: _Outgoing) -> None:
        if _size(item) > FORWARD_LIMIT:
            item = self._summary(item, "too large to forward whole")
        # Sent before it is listed: a `flush` running meanwhile (the processor prepares the
        # next batch while the previous one commits) never sees an unsent item to send twice.
        await self._send(item)
        self._pending.append(item)

    async def _send(self, item: _Outgoing) -> None:
        """Hand `item` to the producer. A refusal is kept in the item's future, so `flush`
        treats it like a failed delivery (re-send or summarise)."""
        try:
            item.future = await self._producer.send(
                item.topic, value=item.value, key=item.key, headers=item.headers
            )
        except KafkaError as exc:
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            item.future = failed

    def _summary(self, item: _Outgoing, error: str) -> _Outgoing:
        """The dead-letter summary of a record that cannot be forwarded whole."""
        self._on_summarised()
        key, value = item.key or b"", item.value or b""
        reason, field, detail = item.why
        headers = [
            ("reason", reason.encode()),
            ("field", field.encode()),
            ("detail", detail.encode()[:1024]),
            ("source", item.source.header()),
            ("summary", b"true"),
            ("summary-error", error.encode()[:512]),
            ("intended-topic", item.topic.encode()),
            ("original-size", str(len(value)).encode()),
            ("original-sha256", hashlib.sha256(value).hexdigest().encode()),
            ("original-key-size", str(len(key)).encode()),
            ("original-key-sha256", hashlib.sha256(key).hexdigest().encode()),
        ]
        return _Outgoing(
            self._dead_letter_topic,
            None if item.key is None else key[:SUMMARY_KEY_BYTES],
            None if item.value is None else value[:SUMMARY_VALUE_BYTES],
            headers,
            item.why,
            item.source,
            is_summary=True,
        )

    @property
    def pending(self) -> int:
        """Records queued and not yet flushed."""
        return len(self._pending)

    async def flush(self) -> None:
        """Wait until every queued record is acknowledged by the broker.

        Records refused for good are replaced by their summaries, sent in the same call.
        Raises `StreamUnavailable` after a retriable failure (the caller backs off and calls
        again: the failed records are sent again, the delivered ones are not), and
        `StreamError` only when the dead-letter topic refuses even a summary (a deployment
        problem: a missing topic, no write permission), which no retry can fix.
        """
        # Records queued while this call waits (the next batch) are left for the next call.
        items, self._pending = self._pending, []
        try:
            while items:
                for item in items:
                    if item.future is None:
                        await self._send(item)
                results = await asyncio.gather(
                    *(i.future for i in items if i.future is not None), return_exceptions=True
                )
                again: list[_Outgoing] = []
                unavailable: StreamError | None = None
                for item, result in zip(items, results, strict=True):
                    if not isinstance(result, BaseException):
                        continue
                    if not isinstance(result, KafkaError):
                        raise result
                    error = translate(result, f"deliver to {item.topic}")
                    if isinstance(error, StreamUnavailable):
                        item.future = None
                        again.append(item)
                        unavailable = error
                    elif item.is_summary:
                        raise StreamError(
                            f"the dead-letter topic {item.topic} refused the summary of the "
                            f"record at {item.source.header().decode()}: {error}"
                        ) from result
                    else:
                        summary = self._summary(item, str(error))
                        await self._send(summary)
                        again.append(summary)
                items = again
                if unavailable is not None:
                    raise unavailable
        finally:
            # Undelivered records stay queued, ahead of newer ones, for the next call.
            self._pending = items + self._pending


def _size(item: _Outgoing) -> int:
    """The record's size as the producer counts it, near enough (framing is in the margin)."""
    return (
        len(item.key or b"")
        + len(item.value or b"")
        + sum(len(k) + len(v) for k, v in item.headers)
    )
