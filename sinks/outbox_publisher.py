"""Publishes threshold crossings from the accounts' outboxes in Redis to the threshold topic.

Order (per account): read outbox entries -> send each to Kafka (idempotent producer, keyed by
account) -> wait for every acknowledgement -> delete the entries. A crash after sending and
before deleting sends them again with the same deterministic `id`
(`account:meter:period:threshold`), so billing sees each crossing at least once and can drop
repeats by id; a crash before sending only delays them. The outbox index is a hint kept by the
processor; `sweep()` scans Redis for outboxes whose note was lost.

Routing by the entry's `kind` field: absent -> a threshold crossing (body built here) to the
thresholds topic; `statement` / `tier` (written by the period closer, lua/close_period.lua) ->
the statements / tiers topic, `reminder` (lua/remind.lua) -> the reminders topic, with the
entry's `body` sent as is. One outbox per account keeps
every event of an account in the order it was decided.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import fields

import orjson
from aiokafka import AIOKafkaProducer

from metering.core.errors import MeteringError
from metering.core.ports import Clock, OutboxEntry, OutboxStore, wall_clock_ms
from metering.core.rfc3339 import format_ms
from metering.settings import Settings
from streams.kafka import translated

log = logging.getLogger(__name__)

_AGE_SAMPLE_ACCOUNTS = 100
"""At most this many indexed outboxes are read for the oldest-entry age, per loop: bounds the
cost when the index is long (publishing stuck); the age is then a lower bound, which still
crosses an alert threshold as it keeps growing."""
_DEFAULT = {f.name: f.default for f in fields(Settings)}
"""The documented defaults (read from the class: nothing is built or read at import)."""


THRESHOLD_SCHEMA = "metering.threshold/v2"
"""The `schema` of the threshold topic's messages (docs/asyncapi.yaml, docs/schemas/)."""


def crossing_event(entry: OutboxEntry) -> dict[str, object]:
    """The JSON body billing receives for one crossing (schema `metering.threshold/v2`).

    Built from the outbox entry lua/apply.lua wrote (every field a string there): numbers and
    flags typed, `period` null for meters without one (gauges, balances), both times in RFC
    3339, the internal `scope` left out. An entry decided before `event_ms` was recorded has
    `event_time` null."""
    f = entry.fields
    num, den = int(f["num"]), int(f["den"])
    limit = int(f["limit"])
    event_ms = int(f.get("event_ms", "0"))
    return {
        "schema": THRESHOLD_SCHEMA,
        "version": 2,
        "type": "threshold.crossed",
        "id": f["id"],
        "account": f["account"],
        "meter": f["meter"],
        "period": f.get("period") or None,
        "threshold": f["threshold"],
        "ratio": f"{num}/{den}",
        "num": num,
        "den": den,
        "percent": _percent(num, den),
        "strict": f.get("strict") == "1",
        "limit": limit,
        "used": int(f["used"]),
        "before": int(f["before"]),
        "event_time": format_ms(event_ms) if event_ms > 0 else None,
        "processed_at": format_ms(int(f["at_ms"])),
    }


def _percent(num: int, den: int) -> int | float:
    """The threshold in percent of the limit: an integer when exact (4/5 -> 80), else rounded
    to two decimals (1/3 -> 33.33); `num`/`den` stay the exact ratio."""
    whole, rest = divmod(num * 100, den)
    return whole if rest == 0 else round(num * 100 / den, 2)


class OutboxPublisher:
    """Moves crossings from Redis outboxes to the threshold topic."""

    def __init__(
        self,
        store: OutboxStore,
        producer: AIOKafkaProducer,
        *,
        topic: str,
        statements_topic: str = str(_DEFAULT["statements_topic"]),
        tiers_topic: str = str(_DEFAULT["tiers_topic"]),
        reminders_topic: str = str(_DEFAULT["reminders_topic"]),
        on_published: Callable[[int], None] = lambda n: None,
        on_kind_published: Callable[[str, int], None] = lambda kind, n: None,
        on_pending: Callable[[int], None] = lambda n: None,
        on_oldest_age: Callable[[float], None] | None = None,
        on_error: Callable[[Exception], None] = lambda exc: None,
        clock_ms: Clock = wall_clock_ms,
    ) -> None:
        """`on_pending` gets the number of indexed outboxes and `on_oldest_age` the age in
        seconds of their oldest entry (0 when none) on every `publish_indexed`, so that a stuck
        outbox shows as a growing age; `on_error` gets each failure the `run` loop survives.
        `on_published` gets the number of crossings delivered, `on_kind_published` the number
        of entries of another kind (`statement`, `tier`, `reminder`)."""
        self._store = store
        self._producer = producer
        self._topic = topic
        self._routes = {
            "statement": statements_topic,
            "tier": tiers_topic,
            "reminder": reminders_topic,
        }
        self._on_published = on_published
        self._on_kind_published = on_kind_published
        self._on_pending = on_pending
        self._on_oldest_age = on_oldest_age
        self._on_error = on_error
        self._clock_ms = clock_ms
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
            kinds: dict[str, int] = {}
            for account in accounts:
                if not await self._store.claim_outbox(account, self._owner):
                    continue
                try:
                    sent += await self._drain(account, kinds)
                finally:
                    await self._store.release_outbox(account, self._owner)
        self.published_total += sent
        crossings = kinds.pop("", 0)
        if crossings:
            self._on_published(crossings)
        for kind, count in kinds.items():
            self._on_kind_published(kind, count)
        return sent

    async def _drain(self, account: str, kinds: dict[str, int]) -> int:
        """Publish one account's outbox; counts what was sent per kind ("" for crossings)."""
        sent = 0
        while True:
            entries = await self._store.read_outbox(account)
            if not entries:
                await self._store.ack_outbox(account, [])
                return sent
            unknown = next((e for e in entries if not self._routable(e)), None)
            if unknown is not None:  # written by a newer version: leave it (and what follows)
                entries = entries[: entries.index(unknown)]
                log.error(
                    "outbox of %s: entry %s of unknown kind %r left for a newer publisher",
                    account,
                    unknown.entry_id,
                    unknown.fields.get("kind"),
                )
            async with translated(f"publish crossings of {account}"):
                futures = [await self._send(account, entry) for entry in entries]
                await asyncio.gather(*futures)
            await self._store.ack_outbox(account, [e.entry_id for e in entries])
            sent += len(entries)
            for entry in entries:
                kind = entry.fields.get("kind", "")
                kinds[kind] = kinds.get(kind, 0) + 1
            if unknown is not None:
                return sent

    async def _send(self, account: str, entry: OutboxEntry) -> asyncio.Future[object]:
        """Queue one entry; the returned future resolves when the broker has it."""
        kind = entry.fields.get("kind")
        if kind is None:
            topic, value = self._topic, orjson.dumps(crossing_event(entry))
        else:
            topic, value = self._routes[kind], entry.fields.get("body", "").encode()
        future: asyncio.Future[object] = await self._producer.send(
            topic,
            key=account.encode(),
            value=value,
            headers=[("id", entry.fields.get("id", "").encode())],
        )
        return future

    def _routable(self, entry: OutboxEntry) -> bool:
        kind = entry.fields.get("kind")
        return kind is None or kind in self._routes

    async def publish_indexed(self) -> int:
        """Publish the outboxes the processor noted."""
        accounts = await self._store.indexed_outboxes()
        self._on_pending(len(accounts))
        if self._on_oldest_age is not None:
            self._on_oldest_age(await self._oldest_age_s(accounts))
        return await self.publish_accounts(accounts)

    async def _oldest_age_s(self, accounts: list[str]) -> float:
        """Seconds since the oldest entry among (a sample of) these outboxes was decided.

        Measured before publishing: when publishing works the outboxes are drained within a
        loop and the age stays near 0; when it does not, the age grows with every loop.
        """
        if not accounts:
            return 0.0
        heads = await asyncio.gather(
            *(self._store.read_outbox(a, count=1) for a in accounts[:_AGE_SAMPLE_ACCOUNTS])
        )
        decided = [int(h[0].fields["at_ms"]) for h in heads if h and "at_ms" in h[0].fields]
        if not decided:
            return 0.0
        return max(0.0, (self._clock_ms() - min(decided)) / 1000)

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
                self._on_error(exc)
                delay = min(delay * 2, 5.0)
                log.warning("publishing crossings failed, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
