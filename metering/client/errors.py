"""The SDK's own errors (the others it raises are the domain's: EventRejected, DeliveryError)."""

from __future__ import annotations

from metering.core.errors import MeteringError


class BufferFull(MeteringError):
    """`emit()` found the buffer full: `max_buffered` events are waiting for Kafka.

    Retriable: the buffer drains as Kafka acknowledges; `flush()` waits for that."""

    retriable = True

    def __init__(self, max_buffered: int, waited_ms: int) -> None:
        waited = f" after waiting {waited_ms} ms" if waited_ms else ""
        super().__init__(
            f"the SDK's buffer is full ({max_buffered} events not yet acknowledged by Kafka)"
            f"{waited}: call flush() or slow down, or raise max_buffered"
        )
        self.max_buffered = max_buffered


class ApiError(MeteringError):
    """The HTTP API answered with an error (its problem document) or could not be reached."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        where = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{where} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
