"""The asyncio producer: `emit()` that returns at once, bounded buffering, `flush()`, ids.

Delivery pipeline: `emit()` takes a slot of the bounded buffer (`max_buffered` events emitted
and not yet acknowledged or failed) and appends the event to a queue; one background task
hands queued events to aiokafka in order (which batches them per partition); each event's
slot is given back when Kafka acknowledges it or gives up on it. So memory is bounded, a
caller never waits for an acknowledgement it does not ask for, and `flush()` is "wait until
the slots are all free".

When the buffer is full the async `emit()` raises `BufferFull` at once (it cannot wait without
blocking the event loop: `await flush()` makes room); the sync producer's `emit()` waits up to
`max_block_ms` for room, then raises `BufferFull`. Every event Kafka does not take reaches
`on_delivery_failure(event, error)` (by default a logged error line naming the event id); an
event re-emitted with the same id counts once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from metering.client.defaults import with_defaults
from metering.client.helpers import EventHelpers
from metering.core.errors import BufferFull, DeliveryError
from metering.core.events import EventType, UsageEvent, decode_event, encode_event
from metering.core.partitioning import ACCOUNT_PARTITIONER
from metering.core.ports import wall_clock_ms

log = logging.getLogger("metering.client")

ID_NAMESPACE = uuid.UUID("0b7f2c4e-8d1a-5f3b-9c6e-2a4d8e1f7b35")
"""uuid5 namespace for ids derived from a caller's idempotency key."""

DEFAULT_MAX_BUFFERED = 10_000
"""Events emitted and not yet acknowledged, at most (a few MB of small JSON events)."""

FailureCallback = Callable[[UsageEvent, DeliveryError], None]
"""Called once per event Kafka did not take, on the producer's event loop (the sync
producer's: its private thread). Keep it short; exceptions it raises are logged and dropped."""

Outcome = asyncio.Future["Receipt"] | concurrent.futures.Future["Receipt"]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Where Kafka stored an event."""

    event_id: str
    partition: int
    offset: int


def event_id(idempotency_key: str | None = None) -> str:
    """A new random id, or a deterministic one for a caller's business key (the same key
    always gives the same id, so a re-send after a crash counts once)."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return str(uuid.uuid5(ID_NAMESPACE, idempotency_key))


def log_failure(event: UsageEvent, error: DeliveryError) -> None:
    """The default `on_delivery_failure`: one error line naming the event (re-emit it as is)."""
    log.error("%s (type %s, account %s)", error, event.type.value, event.account)


class UsageProducer(EventHelpers["asyncio.Future[Receipt]"]):
    """Sends usage events keyed by account, with an idempotent producer (acks=all)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        source: str,
        topic: str = "metering.usage-events",
        linger_ms: int = 5,
        max_future_ms: int = 300_000,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        on_delivery_failure: FailureCallback | None = None,
        **kafka_options: Any,
    ) -> None:
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, not {max_buffered}")
        self._bootstrap = bootstrap
        self._topic = topic
        self._source = source
        self._linger_ms = linger_ms
        self._max_future_ms = max_future_ms
        self._kafka_options = kafka_options
        self._producer: AIOKafkaProducer | None = None
        self.max_buffered = max_buffered
        self._on_failure = on_delivery_failure or log_failure
        self._slots = threading.BoundedSemaphore(max_buffered)
        self._queue: deque[tuple[UsageEvent, Outcome]] = deque()
        self._pending = 0
        # Created unbound; they attach to the loop that first waits on them (start()'s).
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None

    @classmethod
    def connect(cls, bootstrap: str, *, source: str, **options: Any) -> UsageProducer:
        """A producer for `bootstrap` (start it with `async with` or `await start()`); options
        are `topic`, `linger_ms`, `max_future_ms`, `max_buffered`, `on_delivery_failure` and
        aiokafka settings (security, `request_timeout_ms`: how long Kafka may take)."""
        return cls(bootstrap, source=source, **options)

    async def start(self) -> None:
        """Connect (the Kafka client is created here, on the running event loop)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=self._linger_ms,
            client_id=f"metering-sdk-{self._source}",
            partitioner=ACCOUNT_PARTITIONER,  # murmur2 of the account, as the API's producer
            **self._kafka_options,
        )
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            self._producer = None
            raise DeliveryError(
                "-", f"cannot connect to Kafka at {self._bootstrap}: {exc}"
            ) from exc
        self._drainer = asyncio.create_task(self._drain(self._producer), name="metering-sdk-drain")

    async def close(self) -> None:
        """Deliver everything emitted (`flush()`), then close the Kafka client."""
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            if self._drainer is not None:
                self._drainer.cancel()
                await asyncio.gather(self._drainer, return_exceptions=True)
                self._drainer = None
            producer, self._producer = self._producer, None
            await producer.stop()

    stop = close
    """The older name of `close()`."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- building ---------------------------------------------------------------------------

    def build(
        self,
        event_type: EventType | str,
        account: str,
        *,
        time_ms: int | None = None,
        idempotency_key: str | None = None,
        hold: str | None = None,
        **data: Any,
    ) -> UsageEvent:
        """A validated event (raises `EventRejected` naming the field and the reason).

        `hold`: the id of the admission hold this event captures (the admission answer's
        `hold.id`; sent as `holdid`). Every helper takes it too (`EventOptions`)."""
        now = wall_clock_ms()
        data = with_defaults(EventType(event_type), data)  # one default per field
        event = UsageEvent(
            id=event_id(idempotency_key),
            source=self._source,
            type=EventType(event_type),
            account=account,
            time_ms=now if time_ms is None else time_ms,
            hold=hold,
            **data,
        )
        # The processor's own decoder: what passes here passes there.
        return decode_event(encode_event(event), now_ms=now, max_future_ms=self._max_future_ms)

    # -- emitting: returns at once -------------------------------------------------------------

    def emit(self, event: UsageEvent) -> asyncio.Future[Receipt]:
        """Queue `event` and return at once (call from the producer's event loop).

        The returned future resolves to the `Receipt` (or raises `DeliveryError`); awaiting it
        is optional: failures also reach `on_delivery_failure`. Raises `BufferFull` at once
        when `max_buffered` events are still unacknowledged."""
        self._require_started()
        if not self._slots.acquire(blocking=False):
            raise BufferFull(self.max_buffered, 0)
        outcome: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._enqueue(event, outcome)
        return outcome

    async def flush(self) -> None:
        """Wait until every event emitted so far is acknowledged or has failed (failures went
        to `on_delivery_failure`). Bounded by Kafka's `request_timeout_ms` and retries."""
        await self._idle.wait()

    @property
    def buffered(self) -> int:
        """Events emitted and not yet acknowledged or failed."""
        return self._pending

    def _require_started(self) -> None:
        if self._producer is None:
            raise DeliveryError("-", "the producer is not started (use `async with`)")

    def _enqueue(self, event: UsageEvent, outcome: Outcome) -> None:
        """On the loop: the event holds a slot already; queue it and wake the drainer."""
        self._pending += 1
        self._idle.clear()
        self._queue.append((event, outcome))
        self._wake.set()

    async def _drain(self, producer: AIOKafkaProducer) -> None:
        """Hand queued events to aiokafka in order; settle each when Kafka answers."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                event, outcome = self._queue.popleft()
                try:
                    sent = await producer.send(
                        self._topic, value=encode_event(event), key=event.account.encode()
                    )
                except KafkaError as exc:
                    # Before a batch: the topic's metadata is missing (no such topic, no
                    # broker). The events queued behind would wait the same: fail them now.
                    self._settle(event, outcome, None, exc)
                    while self._queue:
                        self._settle(*self._queue.popleft(), None, exc)
                    continue
                sent.add_done_callback(partial(self._acknowledged, event, outcome))

    def _acknowledged(self, event: UsageEvent, outcome: Outcome, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            self._settle(event, outcome, None, KafkaError("the producer was closed"))
            return
        error = done.exception()
        if error is not None:
            self._settle(event, outcome, None, error)
            return
        metadata = done.result()
        self._settle(event, outcome, Receipt(event.id, metadata.partition, metadata.offset), None)

    def _settle(
        self,
        event: UsageEvent,
        outcome: Outcome,
        receipt: Receipt | None,
        error: BaseException | None,
    ) -> None:
        """Give the slot back, resolve the caller's future, report a failure."""
        self._pending -= 1
        self._slots.release()
        self._room.set()
        if receipt is not None:
            outcome.set_result(receipt)
        else:
            failure = DeliveryError(event.id, f"{type(error).__name__}: {error}")
            outcome.set_exception(failure)
            if isinstance(outcome, asyncio.Future):
                outcome.exception()  # retrieved: an un-awaited future does not log it again
            try:
                self._on_failure(event, failure)
            except Exception:
                log.exception("on_delivery_failure raised for event %s", event.id)
        if self._pending == 0:
            self._idle.set()

    # -- sending: waits for the acknowledgement ----------------------------------------------

    async def send(self, event: UsageEvent) -> Receipt:
        """Send one event and wait for Kafka's acknowledgement."""
        [receipt] = await self.send_many([event])
        return receipt

    async def send_many(self, events: Iterable[UsageEvent]) -> list[Receipt]:
        """Queue every event, then wait for all acknowledgements (one batch per partition);
        raises the first `DeliveryError`. Waits for room when the buffer is full."""
        self._require_started()
        futures: list[asyncio.Future[Receipt]] = []
        for event in events:
            while True:
                try:
                    futures.append(self.emit(event))
                    break
                except BufferFull:
                    self._room.clear()
                    await self._room.wait()
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, Receipt)]
