"""The asyncio producer: one helper per event type, ids, batching, idempotent delivery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from metering.core.errors import DeliveryError
from metering.core.events import EventType, UsageEvent, decode_event, encode_event
from metering.core.partitioning import ACCOUNT_PARTITIONER
from metering.core.ports import wall_clock_ms

ID_NAMESPACE = uuid.UUID("0b7f2c4e-8d1a-5f3b-9c6e-2a4d8e1f7b35")
"""uuid5 namespace for ids derived from a caller's idempotency key."""


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


class UsageProducer:
    """Sends usage events keyed by account, with an idempotent producer (acks=all)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        source: str,
        topic: str = "metering.usage-events",
        linger_ms: int = 5,
        max_future_ms: int = 300_000,
        **kafka_options: Any,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._source = source
        self._linger_ms = linger_ms
        self._max_future_ms = max_future_ms
        self._kafka_options = kafka_options
        self._producer: AIOKafkaProducer | None = None

    @classmethod
    def connect(cls, bootstrap: str, *, source: str, **options: Any) -> UsageProducer:
        """A producer for `bootstrap` (start it with `async with` or `await start()`); options
        are `topic`, `linger_ms`, `max_future_ms` and aiokafka security settings."""
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
            raise DeliveryError("-", f"cannot connect to Kafka: {exc}") from exc

    async def stop(self) -> None:
        """Flush what is queued and close."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- sending ----------------------------------------------------------------------------

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
        `hold.id`; sent as `holdid`). Every helper below takes it too (`**options`)."""
        now = wall_clock_ms()
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

    async def send(self, event: UsageEvent) -> Receipt:
        """Send one event and wait for Kafka's acknowledgement."""
        [receipt] = await self.send_many([event])
        return receipt

    async def send_many(self, events: Iterable[UsageEvent]) -> list[Receipt]:
        """Queue every event, then wait for all acknowledgements (one batch per partition)."""
        if self._producer is None:
            raise DeliveryError("-", "the producer is not started (use `async with`)")
        pending: list[tuple[str, asyncio.Future[Any]]] = []
        for event in events:
            try:
                future = await self._producer.send(
                    self._topic, value=encode_event(event), key=event.account.encode()
                )
            except KafkaError as exc:
                raise DeliveryError(event.id, str(exc)) from exc
            pending.append((event.id, future))
        receipts = []
        for event_id_, future in pending:
            try:
                metadata = await future
            except KafkaError as exc:
                raise DeliveryError(event_id_, str(exc)) from exc
            receipts.append(Receipt(event_id_, metadata.partition, metadata.offset))
        return receipts

    # -- one helper per event type -------------------------------------------------------------

    async def email_sent(
        self, account: str, *, contact: str, kind: str = "marketing", **options: Any
    ) -> Receipt:
        """One e-mail sent to one contact (marketing or transactional)."""
        return await self.send(
            self.build(EventType.EMAIL_SENT, account, contact=contact, kind=kind, **options)
        )

    async def email_opened(
        self, account: str, *, contact: str, with_recommendations: bool = False, **options: Any
    ) -> Receipt:
        """An e-mail opened; `with_recommendations` when it carried recommendation snippets."""
        return await self.send(
            self.build(
                EventType.EMAIL_OPENED,
                account,
                contact=contact,
                with_recommendations=with_recommendations,
                **options,
            )
        )

    async def sms_sent(
        self, account: str, *, contact: str, segments: int = 1, **options: Any
    ) -> Receipt:
        """An SMS sent: uses `segments` prepaid credits."""
        return await self.send(
            self.build(EventType.SMS_SENT, account, contact=contact, quantity=segments, **options)
        )

    async def sms_credits_added(self, account: str, *, amount: int, **options: Any) -> Receipt:
        """A top-up of prepaid SMS credits."""
        return await self.send(
            self.build(EventType.SMS_CREDITS_ADDED, account, quantity=amount, **options)
        )

    async def search_viewed(
        self, account: str, *, surface: str = "instant", **options: Any
    ) -> Receipt:
        """Search results shown once (the instant dropdown, or the search page)."""
        return await self.send(
            self.build(EventType.SEARCH_VIEWED, account, surface=surface, **options)
        )

    async def recommendation_viewed(
        self, account: str, *, elements: int = 1, **options: Any
    ) -> Receipt:
        """Recommendation elements shown on a page (3 banners = 3)."""
        return await self.send(
            self.build(EventType.RECOMMENDATION_VIEWED, account, quantity=elements, **options)
        )

    async def contact_added(
        self, account: str, *, contact: str, origin: str = "api", **options: Any
    ) -> Receipt:
        """A contact/profile added, from api, form, import or manual."""
        return await self.send(
            self.build(EventType.CONTACT_ADDED, account, contact=contact, origin=origin, **options)
        )

    async def contact_unsubscribed(self, account: str, *, contact: str, **options: Any) -> Receipt:
        """A contact unsubscribed (still a known profile)."""
        return await self.send(
            self.build(EventType.CONTACT_UNSUBSCRIBED, account, contact=contact, **options)
        )

    async def contact_deleted(self, account: str, *, contact: str, **options: Any) -> Receipt:
        """A contact deleted (no longer counted)."""
        return await self.send(
            self.build(EventType.CONTACT_DELETED, account, contact=contact, **options)
        )

    async def contact_suppressed(
        self, account: str, *, contact: str, reason: str = "opted_out", **options: Any
    ) -> Receipt:
        """A contact suppressed: opted_out, hard_bounce or suppression_list."""
        return await self.send(
            self.build(
                EventType.CONTACT_SUPPRESSED, account, contact=contact, reason=reason, **options
            )
        )

    async def campaign_interaction(
        self, account: str, *, contact: str, channel: str, **options: Any
    ) -> Receipt:
        """One campaign sent to one profile on a channel (Actito's interaction)."""
        return await self.send(
            self.build(
                EventType.CAMPAIGN_INTERACTION, account, contact=contact, channel=channel, **options
            )
        )

    async def resource_added(
        self, account: str, *, resource: str, resource_id: str, **options: Any
    ) -> Receipt:
        """A license resource exists or became active (Actito: a user, a scenario, a form...)."""
        return await self.send(
            self.build(
                EventType.RESOURCE_ADDED,
                account,
                resource=resource,
                resource_id=resource_id,
                **options,
            )
        )

    async def resource_removed(
        self, account: str, *, resource: str, resource_id: str, **options: Any
    ) -> Receipt:
        """A license resource no longer exists or is no longer active."""
        return await self.send(
            self.build(
                EventType.RESOURCE_REMOVED,
                account,
                resource=resource,
                resource_id=resource_id,
                **options,
            )
        )
