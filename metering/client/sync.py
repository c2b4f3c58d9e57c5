"""A synchronous wrapper for scripts: the asyncio producer on a private event-loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from metering.client.producer import Receipt, UsageProducer
from metering.core.events import EventType, UsageEvent

T = TypeVar("T")


class SyncUsageProducer:
    """Blocking calls; each waits for Kafka's acknowledgement."""

    def __init__(self, producer: UsageProducer) -> None:
        self._producer = producer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self._call(producer.start)
        except BaseException:
            self._shutdown_loop()
            raise

    @classmethod
    def connect(cls, bootstrap: str, *, source: str, **options: Any) -> SyncUsageProducer:
        """Connect at once (raises `DeliveryError` when Kafka cannot be reached)."""
        return cls(UsageProducer(bootstrap, source=source, **options))

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result()

    def build(self, event_type: EventType | str, account: str, **fields: Any) -> UsageEvent:
        return self._producer.build(event_type, account, **fields)

    def send(self, event: UsageEvent) -> Receipt:
        return self._call(lambda: self._producer.send(event))

    def send_many(self, events: Iterable[UsageEvent]) -> list[Receipt]:
        batch = list(events)
        return self._call(lambda: self._producer.send_many(batch))

    def __getattr__(self, name: str) -> Callable[..., Receipt]:
        """The async producer's per-type helpers (`email_sent`, `sms_sent`, ...), blocking."""
        helper = getattr(self._producer, name)

        def blocking(*args: Any, **kwargs: Any) -> Receipt:
            coroutine: Awaitable[Receipt] = helper(*args, **kwargs)

            async def wrapped() -> Receipt:
                return await coroutine

            return self._call(wrapped)

        return blocking

    def close(self) -> None:
        """Flush, stop the producer and its loop thread."""
        try:
            self._call(self._producer.stop)
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
