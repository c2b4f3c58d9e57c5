"""Publishes the accounts' outboxes in Redis (threshold crossings, period statements, tier
placements) to their topics, each message once for `read_committed` readers.

Order (per shard of accounts, ADR 0008): hold the shard's claim in Redis -> start the shard's
transactional producer (`<publisher_transactional_id>-<shard>`; starting it fences whoever held
the shard before) -> read the progress topic to its end (sinks/publish_progress.py) -> for each
round of outbox entries: skip (and delete) the entries the progress topic already lists, then in
ONE Kafka transaction send the others to their topics AND their keys to the progress topic ->
commit -> delete the entries from Redis. A crash before the commit aborts the transaction
(readers with `read_committed` never see its messages) and the entries are sent again; a crash
after it leaves entries that the next holder finds in the progress topic and only deletes. A
rebuild after Redis was lost re-decides crossings with the same deterministic `id`s: found in
the progress topic, they are not sent again either. Any Kafka error gives the shard up (the
producer is closed): the next attempt starts over from the fencing step.

Routing by the entry's `kind` field: absent -> a threshold crossing (body built here) to the
thresholds topic; `statement` / `tier` (written by the period closer, lua/close_period.lua) ->
the statements / tiers topic, `reminder` (lua/remind.lua) -> the reminders topic, with the
entry's `body` sent as is. One outbox per account keeps every event of an account in the order
it was decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import orjson
from aiokafka import AIOKafkaProducer

from metering.core.errors import MeteringError
from metering.core.ports import Clock, OutboxEntry, OutboxStore, wall_clock_ms
from metering.core.rfc3339 import format_ms
from metering.settings import Settings
from sinks.publish_progress import PublishedIds, progress_key, progress_value
from streams.kafka import new_consumer, new_transactional_producer, translated

log = logging.getLogger(__name__)

_AGE_SAMPLE_ACCOUNTS = 100
"""At most this many indexed outboxes are read for the oldest-entry age, per loop: bounds the
cost when the index is long (publishing stuck); the age is then a lower bound, which still
crosses an alert threshold as it keeps growing."""
_DEFAULT = {f.name: f.default for f in fields(Settings)}
"""The documented defaults (read from the class: nothing is built or read at import)."""
SHARD_CLAIM_MS = 10_000
"""A shard's claim lasts this long unless renewed; a publisher renews it on every pass, so a
dead publisher's shards move to another one after at most this long."""
_ACCOUNTS_PER_TRANSACTION = 100
"""Outboxes read into one transaction (up to `_ENTRIES_PER_OUTBOX` entries each)."""
_ENTRIES_PER_OUTBOX = 500

ProducerFactory = Callable[[int], AIOKafkaProducer]
"""Shard -> a new, unstarted transactional producer whose transactional id is the shard's."""


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


def shard_of(account: str, shards: int) -> int:
    """The shard an account's outbox belongs to (stable across processes and restarts)."""
    return zlib.crc32(account.encode()) % shards


@dataclass
class _Round:
    """One transaction's worth of entries, per account."""

    send: dict[str, list[OutboxEntry]] = field(default_factory=dict)
    """Entries to publish now."""
    done: dict[str, list[OutboxEntry]] = field(default_factory=dict)
    """Entries the progress topic lists already: only deleted."""
    more: list[str] = field(default_factory=list)
    """Accounts that may hold further entries after this round."""


class OutboxPublisher:
    """Moves outbox entries from Redis to their topics in Kafka transactions, per shard."""

    def __init__(
        self,
        store: OutboxStore,
        producers: ProducerFactory,
        progress: PublishedIds,
        *,
        topic: str,
        statements_topic: str = str(_DEFAULT["statements_topic"]),
        tiers_topic: str = str(_DEFAULT["tiers_topic"]),
        reminders_topic: str = str(_DEFAULT["reminders_topic"]),
        shards: int = 1,
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
        if shards < 1:
            raise ValueError(f"publisher shards must be at least 1, got {shards}")
        self._store = store
        self._new_producer = producers
        self._progress = progress
        self._topic = topic
        self._routes = {
            "statement": statements_topic,
            "tier": tiers_topic,
            "reminder": reminders_topic,
        }
        self._shards = shards
        self._on_published = on_published
        self._on_kind_published = on_kind_published
        self._on_pending = on_pending
        self._on_oldest_age = on_oldest_age
        self._on_error = on_error
        self._clock_ms = clock_ms
        self._owner = uuid.uuid4().hex
        self._held: dict[int, AIOKafkaProducer] = {}
        self._lock = asyncio.Lock()
        self.published_total = 0
        self.skipped_total = 0
        """Entries found already published (in the progress topic) and only deleted."""

    @classmethod
    def from_settings(
        cls, settings: Settings, store: OutboxStore, *, client_id: str, **hooks: object
    ) -> OutboxPublisher:
        """A publisher with the topics, shards and transactional ids of `settings`; `hooks`
        are the `on_*` callbacks. Kafka clients are created when a shard is first taken."""

        def producer(shard: int) -> AIOKafkaProducer:
            return new_transactional_producer(
                settings,
                client_id=f"{client_id}-shard-{shard}",
                transactional_id=f"{settings.publisher_transactional_id}-{shard}",
            )

        consumer = new_consumer(
            settings,
            group_id=None,
            client_id=f"{client_id}-progress",
            isolation_level="read_committed",
        )
        return cls(
            store,
            producer,
            PublishedIds(consumer, settings.publisher_progress_topic),
            topic=settings.thresholds_topic,
            statements_topic=settings.statements_topic,
            tiers_topic=settings.tiers_topic,
            reminders_topic=settings.reminders_topic,
            shards=settings.publisher_shards,
            **hooks,  # type: ignore[arg-type]
        )

    async def publish_accounts(self, accounts: list[str]) -> int:
        """Publish every entry of these accounts' outboxes; returns how many were sent.

        Accounts of a shard another publisher holds are left to it. A Kafka or Redis error
        gives the shard being published up and is raised (`MeteringError`); what was
        committed before stays committed.
        """
        by_shard: dict[int, list[str]] = {shard: [] for shard in self._held}  # renewed too
        for account in accounts:
            by_shard.setdefault(shard_of(account, self._shards), []).append(account)
        async with self._lock:
            sent = 0
            kinds: dict[str, int] = {}
            try:
                for shard, names in sorted(by_shard.items()):
                    producer = await self._hold(shard)
                    if producer is None or not names:
                        continue
                    try:
                        sent += await self._publish_shard(shard, producer, names, kinds)
                    except BaseException:
                        await self._give_up(shard)
                        raise
            finally:
                self.published_total += sent
                crossings = kinds.pop("", 0)
                if crossings:
                    self._on_published(crossings)
                for kind, count in kinds.items():
                    self._on_kind_published(kind, count)
        return sent

    async def _hold(self, shard: int) -> AIOKafkaProducer | None:
        """The shard's started producer when we hold (or just took) the shard, else None.

        Taking a shard: claim it, start a producer with the shard's transactional id (which
        fences the previous holder and ends its open transaction), then read the progress
        topic to its end, which now includes everything the previous holder committed."""
        if not await self._store.claim_publisher_shard(shard, self._owner, SHARD_CLAIM_MS):
            if shard in self._held:
                log.warning("publisher shard %d was taken over by another publisher", shard)
                await self._give_up(shard, release=False)
            return None
        producer = self._held.get(shard)
        if producer is not None:
            return producer
        producer = self._new_producer(shard)
        try:
            async with translated(f"start the transactional producer of shard {shard}"):
                await producer.start()
            read = await self._progress.catch_up(producer)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
            await self._store.release_publisher_shard(shard, self._owner)
            raise
        log.info(
            "publishing shard %d of %d (%d published ids known, %d new)",
            shard,
            self._shards,
            len(self._progress),
            read,
        )
        self._held[shard] = producer
        return producer

    async def _give_up(self, shard: int, *, release: bool = True) -> None:
        """Close the shard's producer (an open transaction is aborted by the broker or by the
        next holder) and give the claim back."""
        producer = self._held.pop(shard, None)
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
        if release:
            with contextlib.suppress(MeteringError):
                await self._store.release_publisher_shard(shard, self._owner)

    async def _publish_shard(
        self, shard: int, producer: AIOKafkaProducer, accounts: list[str], kinds: dict[str, int]
    ) -> int:
        """Publish these accounts (all of `shard`) in rounds of one transaction each."""
        sent = 0
        pending = list(accounts)
        while pending:
            batch, pending = (
                pending[:_ACCOUNTS_PER_TRANSACTION],
                pending[_ACCOUNTS_PER_TRANSACTION:],
            )
            work = await self._read_round(batch)
            self.skipped_total += sum(len(done) for done in work.done.values())
            if work.send:
                sent += await self._transaction(shard, producer, work.send, kinds)
            for account in set(work.send) | set(work.done):
                gone = [e.entry_id for e in work.send.get(account, []) + work.done.get(account, [])]
                await self._store.ack_outbox(account, gone)
            pending = work.more + pending
            if work.more and not await self._store.claim_publisher_shard(
                shard, self._owner, SHARD_CLAIM_MS
            ):
                raise MeteringError(f"publisher shard {shard} was taken over while publishing")
        return sent

    async def _read_round(self, accounts: list[str]) -> _Round:
        """Read the accounts' outboxes; sort entries into to-send and already-published."""
        work = _Round()
        for account in accounts:
            entries = await self._store.read_outbox(account, count=_ENTRIES_PER_OUTBOX)
            if not entries:
                await self._store.ack_outbox(account, [])  # drops the index note
                continue
            unknown = next((e for e in entries if not self._routable(e)), None)
            if unknown is not None:  # written by a newer version: leave it (and what follows)
                entries = entries[: entries.index(unknown)]
                log.error(
                    "outbox of %s: entry %s of unknown kind %r left for a newer publisher",
                    account,
                    unknown.entry_id,
                    unknown.fields.get("kind"),
                )
            elif len(entries) == _ENTRIES_PER_OUTBOX:
                work.more.append(account)
            seen: set[str] = set()
            for entry in entries:
                key = progress_key(account, entry)
                if key in self._progress or key in seen:
                    work.done.setdefault(account, []).append(entry)
                else:
                    seen.add(key)
                    work.send.setdefault(account, []).append(entry)
        return work

    async def _transaction(
        self,
        shard: int,
        producer: AIOKafkaProducer,
        entries: dict[str, list[OutboxEntry]],
        kinds: dict[str, int],
    ) -> int:
        """Send the entries and their progress records in one transaction and commit it."""
        keys: set[str] = set()
        partition = shard % max(1, self._progress.partitions)
        async with translated(f"publish outbox entries of shard {shard}"):
            await producer.begin_transaction()
            futures = []
            for account, batch in entries.items():
                for entry in batch:
                    topic, value = self._message(entry)
                    key = progress_key(account, entry)
                    keys.add(key)
                    futures.append(
                        await producer.send(
                            topic,
                            key=account.encode(),
                            value=value,
                            headers=[("id", entry.fields.get("id", "").encode())],
                        )
                    )
                    futures.append(
                        await producer.send(
                            self._progress.topic,
                            key=key.encode(),
                            value=progress_value(account, topic, entry),
                            partition=partition,
                        )
                    )
            await asyncio.gather(*futures)
            await producer.commit_transaction()
        self._progress.add(keys)
        count = 0
        for batch in entries.values():
            for entry in batch:
                kind = entry.fields.get("kind", "")
                kinds[kind] = kinds.get(kind, 0) + 1
                count += 1
        return count

    def _message(self, entry: OutboxEntry) -> tuple[str, bytes]:
        """The topic and bytes an entry is published as."""
        kind = entry.fields.get("kind")
        if kind is None:
            return self._topic, orjson.dumps(crossing_event(entry))
        return self._routes[kind], entry.fields.get("body", "").encode()

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

    async def close(self) -> None:
        """Close every shard's producer, give the shards back, stop reading progress."""
        async with self._lock:
            for shard in list(self._held):
                await self._give_up(shard)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._progress.stop(), 5)
