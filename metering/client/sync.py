"""A synchronous producer for scripts: the asyncio producer on a private event-loop thread.

`emit()` (and every helper) returns at once with a `concurrent.futures.Future` of the
`Receipt`; when the buffer is full it waits up to `max_block_ms` for room, then raises
`BufferFull`. `flush()` blocks until everything emitted is acknowledged or failed; `close()`
flushes first. `send()` / `send_many()` block for the acknowledgement, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from metering.client.helpers import EventHelpers
from metering.client.producer import Receipt, UsageProducer
from metering.core.errors import BufferFull
from metering.core.events import EventType, UsageEvent

T = TypeVar("T")

DEFAULT_MAX_BLOCK_MS = 10_000
"""How long a sync `emit()` waits for room in a full buffer before raising `BufferFull`."""


class SyncUsageProducer(EventHelpers["concurrent.futures.Future[Receipt]"]):
    """Blocking where a script wants it (`flush`, `send`), non-blocking `emit()` and helpers."""

    def __init__(
        self, producer: UsageProducer, *, max_block_ms: int = DEFAULT_MAX_BLOCK_MS
    ) -> None:
        self._producer = producer
        self._max_block_ms = max_block_ms
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="metering-sdk-loop", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._inbox: deque[tuple[UsageEvent, concurrent.futures.Future[Receipt]]] = deque()
        self._wake_scheduled = False
        try:
            self._call(producer.start)
        except BaseException:
            self._shutdown_loop()
            raise

    @classmethod
    def connect(
        cls,
        bootstrap: str,
        *,
        source: str,
        max_block_ms: int = DEFAULT_MAX_BLOCK_MS,
        **options: Any,
    ) -> SyncUsageProducer:
        """Connect at once (raises `DeliveryError` when Kafka cannot be reached); options as
        `UsageProducer.connect`, plus `max_block_ms`."""
        return cls(UsageProducer(bootstrap, source=source, **options), max_block_ms=max_block_ms)

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result()

    def build(
        self,
        event_type: EventType | str,
        account: str,
        *,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
        **data: Any,
    ) -> UsageEvent:
        """A validated event, as `UsageProducer.build`."""
        return self._producer.build(
            event_type, account, time_ms=time_ms, idempotency_key=idempotency_key, **data
        )

    def emit(self, event: UsageEvent) -> concurrent.futures.Future[Receipt]:
        """Queue `event` and return at once (from any thread); waits up to `max_block_ms` only
        when the buffer is full, then raises `BufferFull`."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        self._producer._require_started()
        if not self._producer._slots.acquire(timeout=self._max_block_ms / 1000):
            raise BufferFull(self._producer.max_buffered, self._max_block_ms)
        outcome: concurrent.futures.Future[Receipt] = concurrent.futures.Future()
        self._inbox.append((event, outcome))
        if not self._wake_scheduled:  # one wake-up of the loop per burst, not per event
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self._take_inbox)
        return outcome

    def _take_inbox(self) -> None:
        """On the loop: queue what the callers' threads handed over (in their order)."""
        self._wake_scheduled = False  # before draining: a later append schedules a new wake
        while self._inbox:
            self._producer._enqueue(*self._inbox.popleft())

    def flush(self) -> None:
        """Block until everything emitted so far is acknowledged or has failed."""
        self._call(self._producer.flush)

    @property
    def buffered(self) -> int:
        """Events emitted and not yet acknowledged or failed (approximate across threads)."""
        return self._producer.buffered

    def send(self, event: UsageEvent) -> Receipt:
        """Send one event and block until Kafka acknowledges it."""
        return self._call(lambda: self._producer.send(event))

    def send_many(self, events: Iterable[UsageEvent]) -> list[Receipt]:
        """Send every event and block until all are acknowledged."""
        batch = list(events)
        return self._call(lambda: self._producer.send_many(batch))

    def close(self) -> None:
        """Flush, stop the producer and its loop thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._producer.close)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
