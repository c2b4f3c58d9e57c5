"""Publishes threshold crossings from the accounts' outboxes in Redis to the threshold topic.

Order (per account): read outbox entries -> send each to Kafka (idempotent producer, keyed by
account) -> wait for every acknowledgement -> delete the entries. A crash after sending and
before deleting sends them again with the same deterministic `id`
(`account:meter:period:threshold`), so billing sees each crossing at least once and can drop
repeats by id; a crash before sending only delays them. The outbox index is a hint kept by the
processor; `sweep()` scans Redis for outboxes whose note was lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer

from metering.errors import MeteringError
from metering.state.redis_store import OutboxEntry, RedisStateStore
from streams.kafka import translated

log = logging.getLogger(__name__)

_INT_FIELDS = ("num", "den", "limit", "used", "before", "at_ms")


def crossing_event(entry: OutboxEntry) -> dict[str, object]:
    """The JSON body billing receives for one crossing."""
    body: dict[str, object] = dict(entry.fields)
    for name in _INT_FIELDS:
        if name in body:
            body[name] = int(entry.fields[name])
    body["type"] = "threshold.crossed"
    body["ratio"] = f"{entry.fields.get('num', '0')}/{entry.fields.get('den', '1')}"
    return body


class OutboxPublisher:
    """Moves crossings from Redis outboxes to the threshold topic."""

    def __init__(
        self,
        store: RedisStateStore,
        producer: AIOKafkaProducer,
        *,
        topic: str,
        on_published: Callable[[int], None] = lambda n: None,
        on_pending: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._store = store
        self._producer = producer
        self._topic = topic
        self._on_published = on_published
        self._on_pending = on_pending
        self._owner = uuid.uuid4().hex
        self._lock = asyncio.Lock()
        self.published_total = 0

    async def publish_accounts(self, accounts: list[str]) -> int:
        """Publish every entry of these accounts' outboxes; returns how many were sent.

        Each account's outbox is claimed first (in this process by a lock, across processes
        by a claim key with a TTL), so two publishers never send the same entries; an account
        claimed elsewhere is left to its claimant.
        """
        async with self._lock:
            sent = 0
            for account in accounts:
                if not await self._store.claim_outbox(account, self._owner):
                    continue
                try:
                    sent += await self._drain(account)
                finally:
                    await self._store.release_outbox(account, self._owner)
        self.published_total += sent
        if sent:
            self._on_published(sent)
        return sent

    async def _drain(self, account: str) -> int:
        sent = 0
        while True:
            entries = await self._store.read_outbox(account)
            if not entries:
                await self._store.ack_outbox(account, [])
                return sent
            async with translated(f"publish crossings of {account}"):
                futures = [await self._send(account, entry) for entry in entries]
                await asyncio.gather(*futures)
            await self._store.ack_outbox(account, [e.entry_id for e in entries])
            sent += len(entries)

    async def _send(self, account: str, entry: OutboxEntry) -> asyncio.Future[object]:
        """Queue one crossing; the returned future resolves when the broker has it."""
        future: asyncio.Future[object] = await self._producer.send(
            self._topic,
            key=account.encode(),
            value=orjson.dumps(crossing_event(entry)),
            headers=[("id", entry.fields.get("id", "").encode())],
        )
        return future

    async def publish_indexed(self) -> int:
        """Publish the outboxes the processor noted."""
        accounts = await self._store.indexed_outboxes()
        self._on_pending(len(accounts))
        return await self.publish_accounts(accounts)

    async def sweep(self) -> int:
        """Publish every non-empty outbox found by scanning Redis."""
        return await self.publish_accounts(await self._store.sweep_outboxes())

    async def run(self, *, interval_s: float = 0.2, sweep_every_s: float = 30.0) -> None:
        """Publish until cancelled: indexed outboxes often, a full sweep now and then."""
        loop = asyncio.get_running_loop()
        next_sweep = 0.0
        delay = interval_s
        while True:
            try:
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + sweep_every_s
                await self.publish_indexed()
                delay = interval_s
            except MeteringError as exc:  # Redis or Kafka unavailable: back off, keep going
                delay = min(delay * 2, 5.0)
                log.warning("publishing crossings failed, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
