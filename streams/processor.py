"""The usage processor: Kafka usage events -> per-account counters in Redis, effectively once.

Commit order for every `getmany()` batch (what a crash between two steps means):

1. Decode, validate and map each record. Rejected records are queued to the dead-letter topic,
   late ones to the late-events topic.
2. Wait until Kafka acknowledged those side outputs. (Crash before 6: they are sent again on
   replay — at least once, never lost.)
3. Apply every account's share of the batch to Redis: one pipeline (one round trip), one atomic
   Lua step per account that writes its counters, dedup marks, crossings (into the account's
   outbox) and its fence (the last offset of this partition applied for the account).
   A step whose fence already covers it is a no-op, so a replay never counts twice.
   A step into a period the store knows is closed (ADR 0004) writes nothing: those events go
   to the late topic, acknowledged before the rest of the step is applied.
4. Note accounts with crossings in the outbox index (a hint; the publisher's sweep backs it).
5. Publish outboxes (sinks/outbox_publisher.py): a crash before that only delays crossings.
6. Advance the partition positions (with the event-time watermark and the time applied, the
   API's "as of") in Redis; forward only.
   Crash before this: the batch is read again and step 3 skips what it already applied.
7. Commit offsets to Kafka, for lag tooling only; Redis positions decide where we resume.

On assignment each partition is sought to its Redis position + 1. With no position in Redis:
if Kafka holds a committed offset the Redis state was lost — we replay from the beginning of
the log to rebuild it, and refuse (StateLost) when retention has already deleted part of it.
The replay's target (that committed offset) is recorded in Redis before the store marker is
written and cleared when the partition's position reaches it: meanwhile the API answers 503
instead of reading counters that are still being rebuilt.

A position below the log start (retention deleted records not applied yet, found at assignment
or mid-run) is never reset by the consumer (`auto_offset_reset="none"`): StateLost naming the
lost range, unless the operator passed `--accept-lost-records` (`_out_of_range`).

A Redis that comes back empty *while* processors run is noticed through the store marker: a
random value written when a processor first uses the store, read on every assignment and before
every apply and position write (one MGET with the positions of the partitions it owns). Missing
or different => StateLost: the processor stops instead of counting the open periods from zero
at its in-memory offsets; restarted, it rebuilds as above. A Redis that comes back *older*
(restored from a backup, or the last second of `appendfsync everysec` lost in a host crash)
keeps its marker but shows a position below the one this processor stored => StateLost too;
restarted, it resumes from the restored positions (fences and dedup marks went back with them).
A store with fences but neither marker nor positions lost its state and then
took writes; replaying over those fences would skip events, so that is StateLost too (flush
Redis, restart). A failure while seeking stops the processor: aiokafka only logs a listener's
exception, and the consumer would silently resume from Kafka's committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from metering.core.errors import (
    EventRejected,
    MeteringError,
    NotPositioned,
    PositionOutOfRange,
    StateLost,
    StreamError,
)
from metering.core.fold import AccountWork
from metering.core.ports import (
    ApplyStatus,
    Clock,
    ConsumedRecord,
    EventMapper,
    OutboxPublishing,
    SideOutputs,
    SourceRef,
    UsageStore,
    wall_clock_ms,
)
from streams.kafka import translated
from streams.metrics import ProcessorMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """What the processor loop needs besides its collaborators."""

    topic: str
    group: str
    dedup_window_s: int
    batch_max_records: int = 5000
    poll_timeout_ms: int = 200
    max_backoff_s: float = 5.0
    kafka_commit_interval_s: float = 5.0
    batch_linger_ms: int = 50
    accept_lost_records: bool = False
    """A position below the log start (retention deleted records not applied yet): skip to
    the log start, log and count the lost range, instead of stopping with StateLost."""


@dataclass(slots=True)
class _Prepared:
    """A fetched batch after steps 1-2, waiting for its Redis work."""

    oldest_ts: int
    works: dict[tuple[str, TopicPartition], AccountWork] = field(default_factory=dict)
    positions: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    total: int = 0
    records: dict[TopicPartition, list[ConsumedRecord]] = field(default_factory=dict)
    """The fetched records, for the late topic when the store finds a period closed."""


class UsageProcessor:
    """Runs the commit order above until `stop` is set; see the module docstring."""

    def __init__(
        self,
        *,
        config: ProcessorConfig,
        consumer: AIOKafkaConsumer,
        store: UsageStore,
        mapper: EventMapper,
        side_outputs: SideOutputs,
        publisher: OutboxPublishing,
        metrics: ProcessorMetrics,
        clock_ms: Clock = wall_clock_ms,
    ) -> None:
        self._config = config
        self._consumer = consumer
        self._store = store
        self._mapper = mapper
        self._side = side_outputs
        self._publisher = publisher
        self._metrics = metrics
        self._clock_ms = clock_ms
        self._watermarks: dict[TopicPartition, int] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._last_commit = 0.0
        self._lock = asyncio.Lock()
        self._marker: str | None = None
        """The store marker this processor started on (None until the first assignment)."""
        self._fatal: BaseException | None = None
        """Raised by `run`: the rebalance listener cannot stop the consumer itself."""
        self._positioned: set[TopicPartition] = set()
        """Partitions `on_assigned` has sought; `run` applies records of these only."""
        self._rebuilding: dict[TopicPartition, int] = {}
        """Owned partitions replaying after a Redis loss -> the offset the replay must reach
        (also in Redis, `keys.REBUILDING`, where the API sees it)."""
        self._assignments = 0
        """Counts rebalance callbacks: a batch never merges fetches from both sides of one."""
        self._written: dict[TopicPartition, int] = {}
        """Per owned partition, the position Redis must hold at least (read or written)."""
        self.batches = 0

    def listener(self) -> ConsumerRebalanceListener:
        """The rebalance listener to subscribe with (seeks to Redis positions)."""
        return _Rebalance(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and apply until `stop` is set; the batch in hand is finished first.

        Batches are pipelined: while batch N's Redis work (step 3 onwards) is in flight, batch
        N+1 is fetched, decoded and mapped (steps 1-2), so the processor's CPU and Redis work
        overlap. Commits stay strictly in order: N+1's Redis work starts after N's finished.
        """
        inflight: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                records = await self._fetch()
                if self._fatal is not None:
                    raise self._fatal
                records = self._only_positioned(records)
                if not records:
                    if inflight is not None:
                        await inflight
                        inflight = None
                    continue
                prepared = await self._prepare(records)
                if inflight is not None:
                    await inflight
                inflight = asyncio.create_task(self._commit_locked(prepared))
        finally:
            if inflight is not None:
                await inflight
            await self._commit_to_kafka({}, now=True)

    async def _fetch(self) -> dict[TopicPartition, list[ConsumedRecord]]:
        """One batch: the first `getmany`, then more for up to `batch_linger_ms` while the
        batch is small. Under a steady load each fetch brings a few records of many accounts;
        one account step per account and batch made small batches cost several times more per
        event than large ones (ADR 0005), so waiting a few milliseconds buys capacity."""
        config = self._config
        records = self._only_positioned(
            await self._poll(config.poll_timeout_ms, config.batch_max_records)
        )
        total = sum(len(batch) for batch in records.values())
        if not total or config.batch_linger_ms <= 0:
            return records
        deadline = time.monotonic() + config.batch_linger_ms / 1000
        epoch = self._assignments
        while total < config.batch_max_records and self._fatal is None:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            # Each chunk is filtered when it arrives: a partition positioned later must not
            # let records fetched before its seek through (see `_only_positioned`).
            more = self._only_positioned(
                await self._poll(left_ms, config.batch_max_records - total)
            )
            if self._assignments != epoch:
                # A rebalance during the linger: every partition still ours was sought again,
                # so what was gathered before it is stale; keep only what came after.
                return more
            for tp, batch in more.items():
                records.setdefault(tp, []).extend(batch)
                total += len(batch)
        return records

    async def _poll(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumedRecord]]:
        """One `getmany`, transient failures retried; a position that fell out of the log is
        handled by `_out_of_range` (and this poll returns nothing)."""

        async def getmany() -> dict[TopicPartition, list[ConsumedRecord]]:
            async with translated("fetch"):
                return await self._consumer.getmany(  # type: ignore[no-any-return]
                    timeout_ms=timeout_ms, max_records=max_records
                )

        try:
            return await self._retrying("fetch", getmany)
        except PositionOutOfRange as exc:
            await self._out_of_range(exc)
            return {}
        except NotPositioned as exc:
            # aiokafka looks for a position of a newly assigned partition before the rebalance
            # listener has sought it (we never let it pick one: auto_offset_reset="none").
            level = logging.DEBUG
            if any(TopicPartition(t, p) in self._positioned for t, p in exc.partitions):
                level = logging.WARNING
            log.log(level, "%s; the rebalance listener positions it", exc)
            await asyncio.sleep(self._config.poll_timeout_ms / 1000)
            return {}

    async def _out_of_range(self, exc: PositionOutOfRange) -> None:
        """A fetch position outside the log. Below the log start, retention deleted records
        this processor had not applied: StateLost naming the partition and the lost range
        (every restart refuses the same way), unless the operator accepted the loss
        (`accept_lost_records`): then the range is logged and counted and the partition moves
        to the log start. Above the log end the log was truncated or recreated: StateLost."""
        for (topic, partition), offset in sorted(exc.positions.items()):
            tp = TopicPartition(topic, partition)
            async with translated("read the log's bounds"):
                start = (await self._consumer.beginning_offsets([tp]))[tp]
                end = (await self._consumer.end_offsets([tp]))[tp]
            if start <= offset <= end:
                continue  # the log moved back into range meanwhile: fetch again
            self._metrics.out_of_range.labels(partition=str(partition)).inc()
            if offset > end:
                raise StateLost(
                    f"{topic}/{partition}: the position {offset} is beyond the log end {end}: "
                    "the partition was truncated or recreated. Stopping instead of guessing "
                    "where to resume."
                )
            lost = start - offset
            if not self._config.accept_lost_records:
                raise StateLost(
                    f"{topic}/{partition}: records {offset}..{start - 1} ({lost}) were deleted "
                    f"by retention before this processor applied them (the log now starts at "
                    f"{start}). Stopping instead of skipping them; restart with "
                    "--accept-lost-records (METERING_ACCEPT_LOST_RECORDS=true) to accept the "
                    "loss and go on from the log start."
                )
            self._metrics.records_lost.labels(partition=str(partition)).inc(lost)
            log.error(
                "%s/%s: records %s..%s (%s) were deleted by retention before they were "
                "applied; accepted (--accept-lost-records): resuming at the log start %s",
                topic,
                partition,
                offset,
                start - 1,
                lost,
                start,
                extra={"partition": partition},
            )
            self._consumer.seek(tp, start)

    def _only_positioned(
        self, records: dict[TopicPartition, list[ConsumedRecord]]
    ) -> dict[TopicPartition, list[ConsumedRecord]]:
        """Drop records of partitions not sought by `on_assigned` yet.

        aiokafka resets a new partition to Kafka's committed offset and may hand its records
        to `getmany` while the listener is still reading Redis. Applied, they would set fences
        above the replay that `on_assigned` is about to start (Redis lost: from the log's
        beginning), and the replay would then skip everything below them. The listener pauses
        the partitions first, so this is a second line of defence; the seek that follows
        repositions the consumer, so nothing dropped here is lost.
        """
        stray = [tp for tp in records if tp not in self._positioned]
        if not stray:
            return records
        log.info("ignoring records of partitions not positioned yet: %s", sorted(stray))
        return {tp: batch for tp, batch in records.items() if tp in self._positioned}

    async def process(self, records: dict[TopicPartition, list[ConsumedRecord]]) -> None:
        """Apply one `getmany()` result following the commit order (no pipelining)."""
        await self._commit_locked(await self._prepare(records))

    async def _prepare(self, records: dict[TopicPartition, list[ConsumedRecord]]) -> _Prepared:
        """Steps 1-2: decode, validate and map; side outputs are queued, not yet awaited."""
        now_ms = self._clock_ms()
        prepared = _Prepared(oldest_ts=now_ms, records=records)
        for tp, batch in records.items():
            if batch:
                oldest = await self._read(tp, batch, now_ms, prepared.works)
                prepared.oldest_ts = min(prepared.oldest_ts, oldest)
                prepared.positions[tp] = (batch[-1].offset, self._watermarks[tp])
                prepared.total += len(batch)
        self._metrics.consumed.inc(prepared.total)
        self._metrics.batch_size.observe(prepared.total)
        return prepared

    async def _commit_locked(self, prepared: _Prepared) -> None:
        async with self._lock:
            await self._commit(prepared)

    async def _commit(self, prepared: _Prepared) -> None:
        """Steps 2-7 of the commit order for one prepared batch."""
        await self._retrying("deliver side outputs", self._side.flush)
        outboxes = await self._apply(list(prepared.works.values()), prepared.records)
        if outboxes:
            await self._retrying("index outboxes", lambda: self._store.index_outboxes(outboxes))
            await self._retrying(
                "publish crossings", lambda: self._publisher.publish_accounts(sorted(outboxes))
            )
        by_topic: dict[str, dict[int, tuple[int, int]]] = {}
        for tp, value in prepared.positions.items():
            by_topic.setdefault(tp.topic, {})[tp.partition] = value
        for topic, parts in by_topic.items():
            await self._retrying(
                "advance positions",
                lambda t=topic, p=parts: self._verified(  # type: ignore[misc]
                    lambda: self._store.advance_positions(
                        self._config.group, t, p, applied_ms=self._clock_ms()
                    )
                ),
            )
            for partition, (offset, _) in parts.items():
                tp = TopicPartition(topic, partition)
                self._written[tp] = max(offset, self._written.get(tp, -1))
            if self._rebuilding:
                await self._finish_rebuilding(topic, parts)
        await self._commit_to_kafka(prepared.positions)
        if prepared.works:
            lag_s = max(0.0, (self._clock_ms() - prepared.oldest_ts) / 1000)
            self._metrics.event_lag_seconds.observe(lag_s)
        self.batches += 1

    async def _read(
        self,
        tp: TopicPartition,
        batch: list[ConsumedRecord],
        now_ms: int,
        works: dict[tuple[str, TopicPartition], AccountWork],
    ) -> int:
        """Map one partition's records into `works` (side outputs queued); returns the oldest
        Kafka timestamp among the records that will be applied."""
        watermark = self._watermarks.get(tp, 0)
        oldest_ts = now_ms
        for record in batch:
            try:
                mapped = self._mapper.map(
                    record.value, now_ms=now_ms, watermark_ms=watermark, key=record.key
                )
            except EventRejected as exc:
                self._metrics.rejected.labels(reason=str(exc.reason)).inc()
                await self._side.dead_letter(
                    SourceRef(tp.topic, tp.partition, record.offset),
                    record.key,
                    record.value,
                    reason=str(exc.reason),
                    field=exc.field,
                    detail=exc.detail,
                )
                continue
            watermark = max(watermark, mapped.time_ms)
            if mapped.late:
                self._metrics.late.inc()
                await self._side.late(
                    SourceRef(tp.topic, tp.partition, record.offset),
                    record.key,
                    record.value,
                    meters=list(mapped.late),
                )
                if not mapped.contributions and not mapped.suppressions:
                    continue
            # Keyed by partition too: an account's fence is per partition, and a producer that
            # keys records differently may spread one account over several partitions.
            work = works.get((mapped.account, tp))
            if work is None:
                work = AccountWork(mapped.account, tp.topic, tp.partition)
                works[(mapped.account, tp)] = work
            if not work.add(record.offset, mapped):
                self._metrics.deduplicated.inc()
            oldest_ts = min(oldest_ts, record.timestamp)
        self._watermarks[tp] = watermark
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - batch[-1].offset - 1)
            self._metrics.consumer_lag.labels(partition=str(tp.partition)).set(lag)
        return oldest_ts

    async def _apply(
        self, works: list[AccountWork], records: dict[TopicPartition, list[ConsumedRecord]]
    ) -> set[str]:
        """Apply works until each is applied or fenced; returns accounts whose outbox has data.

        Events the store refuses because their period is closed go to the late topic, and are
        acknowledged by Kafka before the rest of their step is re-sent: once the fence moved
        past them a replay would not find them again."""
        outboxes: set[str] = set()
        pending = works
        while pending:
            steps = [w.step() for w in pending]
            started = time.perf_counter()
            outcomes = await self._retrying(
                "apply",
                lambda s=steps: self._verified(  # type: ignore[misc]
                    lambda: self._store.apply(
                        s, dedup_window_s=self._config.dedup_window_s, now_ms=self._clock_ms()
                    )
                ),
            )
            self._metrics.apply_seconds.observe(time.perf_counter() - started)
            again: list[AccountWork] = []
            applied = crossings = 0  # counted per call, not per step (a metric update locks)
            refused = False
            for work, outcome in zip(pending, outcomes, strict=True):
                if outcome.status is ApplyStatus.APPLIED:
                    applied += work.events
                    crossings += len(outcome.crossings)
                    if outcome.outbox_length:
                        outboxes.add(work.account)
                elif outcome.status is ApplyStatus.ALREADY_APPLIED:
                    self._metrics.replayed.inc(work.events)
                    if outcome.outbox_length:
                        outboxes.add(work.account)
                elif outcome.status is ApplyStatus.PARTIAL:
                    self._metrics.replayed.inc(work.cut_to_fence(outcome.fence))
                    again.append(work)
                    # A replay after a crash: the part already applied may have left crossings
                    # that were never indexed, and the re-sent rest reports only its own.
                    outboxes.add(work.account)
                elif outcome.status is ApplyStatus.CLOSED:
                    await self._late_for_closed(work, outcome.closed, records)
                    refused = True
                    again.append(work)
                else:
                    self._metrics.deduplicated.inc(work.drop_ids(outcome.duplicates))
                    again.append(work)
            self._metrics.applied.inc(applied)
            self._metrics.crossings.inc(crossings)
            if refused:
                await self._retrying("deliver side outputs", self._side.flush)
            pending = again
        return outboxes

    async def _late_for_closed(
        self,
        work: AccountWork,
        closed: tuple[tuple[str, str], ...],
        records: dict[TopicPartition, list[ConsumedRecord]],
    ) -> None:
        """Queue to the late topic the events of `work` that the store refused (their period
        is closed), in the late topic's usual format, and take them out of the work."""
        tp = TopicPartition(work.topic, work.partition)
        by_offset = {r.offset: r for r in records.get(tp, ())}
        for offset, meters in work.refuse_closed(closed):
            record = by_offset[offset]
            self._metrics.late.inc()
            await self._side.late(
                SourceRef(tp.topic, tp.partition, offset), record.key, record.value, meters=meters
            )

    async def _commit_to_kafka(
        self, positions: dict[TopicPartition, tuple[int, int]], *, now: bool = False
    ) -> None:
        """Commit offsets to Kafka every `kafka_commit_interval_s` (lag tooling and Redis-loss
        detection need an offset there; exactness does not), not after every batch: a commit
        is a broker round trip, which small batches would pay per batch."""
        for tp, (offset, _) in positions.items():
            self._to_commit[tp] = offset + 1
        clock = time.monotonic()
        if not self._to_commit or (
            not now and clock - self._last_commit < self._config.kafka_commit_interval_s
        ):
            return
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in self._consumer.assignment()}
        self._to_commit.clear()
        self._last_commit = clock
        if not offsets:
            return
        try:
            async with translated("commit offsets"):
                # Bounded: aiokafka retries a commit while the group is unsettled, and a
                # commit that waits forever would hold up a shutdown (lag tooling only).
                await asyncio.wait_for(self._consumer.commit(offsets), 5)
        except Exception as exc:  # noqa: BLE001 - lag tooling only; Redis holds the truth
            self._metrics.kafka_errors.inc()
            log.warning("offset commit to Kafka failed (Redis positions are the truth): %s", exc)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry transient failures (`MeteringError.retriable`) with capped exponential backoff,
        never skip; anything else propagates."""
        delay = 0.05
        while True:
            try:
                return await call()
            except MeteringError as exc:
                if not exc.retriable:
                    raise
                if isinstance(exc, StreamError):
                    self._metrics.kafka_errors.inc()
                    log.warning("%s: Kafka unavailable, retrying in %.2fs: %s", what, delay, exc)
                else:
                    self._metrics.redis_errors.inc()
                    log.warning("%s: Redis unavailable, retrying in %.2fs: %s", what, delay, exc)
            self._metrics.retries.inc()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._config.max_backoff_s)

    async def _verified(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` once Redis is still the store we have been writing (else StateLost): its
        marker is the one we started on, and no position of ours went back.

        Inside the retried call, so a write is re-sent only after the check passed again on a
        new connection: a Redis that restarted empty gets nothing written into it, and one
        that came back older (restored from a backup, or a host crash that lost the last
        second of `appendfsync everysec`) is not written on from our in-memory offsets, which
        would skip what it lost.
        """
        if self._marker is not None:
            owned = [tp.partition for tp in self._written if tp.topic == self._config.topic]
            marker, stored = await self._store.marker_and_positions(
                self._config.group, self._config.topic, owned
            )
            self._marker_in_force(marker)
            for partition in owned:
                tp = TopicPartition(self._config.topic, partition)
                if stored.get(partition, -1) < self._written[tp]:
                    raise StateLost(
                        f"{tp.topic}/{partition}: Redis went back in time: its position is "
                        f"{stored.get(partition)}, this processor stored {self._written[tp]} "
                        "(Redis restored from a backup or lost its last writes). Stopping "
                        "instead of skipping what it lost; restart the processor to resume "
                        "from Redis' positions."
                    )
        return await call()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Check the store, seek every assigned partition (see module docstring); a failure is
        kept for `run` to raise, since aiokafka would only log it."""
        # Before any await: no record of these partitions reaches `run` until each is sought.
        self._consumer.pause(*assigned)
        self._assignments += 1
        try:
            await self._on_assigned(assigned)
        except Exception as exc:  # noqa: BLE001 - every failure here must stop the processor
            log.error("cannot resume the assigned partitions, stopping: %s", exc)  # noqa: TRY400
            self._fatal = exc
            return
        self._positioned |= assigned
        self._consumer.resume(*assigned)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        marker = await self._retrying("read store marker", self._store.store_marker)
        if self._marker is not None:
            self._marker_in_force(marker)
        elif marker is None:
            await self._refuse_partial_state()
        by_topic: dict[str, list[int]] = {}
        for tp in assigned:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, parts in by_topic.items():
            stored = await self._retrying(
                "read positions",
                lambda t=topic, p=parts: self._store.positions(self._config.group, t, p),  # type: ignore[misc]
            )
            for partition in parts:
                tp = TopicPartition(topic, partition)
                if partition in stored:
                    offset, watermark = stored[partition]
                    self._consumer.seek(tp, offset + 1)
                    self._watermarks[tp] = watermark
                    self._written[tp] = offset
                else:
                    await self._seek_without_position(tp)
            targets = await self._retrying(
                "read rebuilding",
                lambda t=topic, p=parts: self._store.rebuilding_targets(t, p),  # type: ignore[misc]
            )
            for partition, target in targets.items():
                self._rebuilding[TopicPartition(topic, partition)] = target
        if self._marker is None:
            if marker is None:
                token = uuid.uuid4().hex
                marker = await self._retrying(
                    "write store marker", lambda: self._store.claim_store_marker(token)
                )
            self._marker = marker
        self._metrics.assigned_partitions.set(len(self._consumer.assignment()))

    def _marker_in_force(self, found: str | None) -> None:
        if found != self._marker:
            raise StateLost(
                f"Redis lost its state while this processor was running: the store marker is "
                f"{'gone' if found is None else 'another one'} (Redis restarted empty, was "
                "flushed or replaced). Stopping instead of counting from zero; restart the "
                "processor to rebuild the open periods from Kafka."
            )

    async def _refuse_partial_state(self) -> None:
        """No store marker: fresh, or lost. Positions without a marker were written by a
        backfill or before markers existed: adopted. Fences without positions mean a store that
        lost its state and then took writes, which a replay cannot repair (StateLost)."""
        topic = self._config.topic
        parts = self._consumer.partitions_for_topic(topic) or set()
        stored = await self._retrying(
            "read positions", lambda: self._store.positions(self._config.group, topic, parts)
        )
        if stored:
            log.info("%s: positions found without a store marker; adopting them", topic)
            return
        if await self._retrying("scan fences", lambda: self._store.has_fences(topic)):
            raise StateLost(
                f"{topic}: Redis holds account fences but neither positions nor a store "
                "marker: it lost its state and then received writes, and replaying over those "
                "fences would skip events. Empty the database (FLUSHDB) and restart to rebuild "
                "from Kafka, or restore Redis from its append-only file or backup."
            )

    async def _seek_without_position(self, tp: TopicPartition) -> None:
        committed = await self._consumer.committed(tp)
        if committed is not None:
            beginning = (await self._consumer.beginning_offsets([tp]))[tp]
            if beginning > 0:
                raise StateLost(
                    f"{tp.topic}/{tp.partition}: Redis has no position but Kafka has a committed "
                    f"offset ({committed}): Redis lost its state, and the log now starts at "
                    f"{beginning}, so a replay cannot rebuild it. Restore Redis from its "
                    "append-only file or backup, or start over deliberately."
                )
            log.warning(
                "%s/%s: Redis has no position but Kafka committed %s: Redis lost its state; "
                "rebuilding by replaying the partition from its beginning",
                tp.topic,
                tp.partition,
                committed,
                extra={"partition": tp.partition},
            )
            # Recorded before the marker is written (end of `_on_assigned`): the API must never
            # see a marker without the rebuild that is still under way.
            await self._retrying(
                "mark rebuilding",
                lambda: self._store.mark_rebuilding(tp.topic, tp.partition, committed),
            )
            self._rebuilding[tp] = committed
        await self._consumer.seek_to_beginning(tp)
        self._watermarks[tp] = 0

    async def _finish_rebuilding(self, topic: str, positions: dict[int, tuple[int, int]]) -> None:
        """Clear the replay targets these positions reached: once none is left, the API
        answers from the store again."""
        done = []
        for partition, (offset, _) in positions.items():
            target = self._rebuilding.get(TopicPartition(topic, partition))
            if target is not None and offset + 1 >= target:
                done.append(partition)
        if not done:
            return
        await self._retrying(
            "finish rebuilding", lambda: self._store.finish_rebuilding(topic, done)
        )
        for partition in done:
            del self._rebuilding[TopicPartition(topic, partition)]
            log.info(
                "%s/%s: rebuilt: the replay reached the offset committed before the loss",
                topic,
                partition,
                extra={"partition": partition},
            )

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait for the batch in hand to finish, commit, then forget the revoked partitions."""
        self._assignments += 1
        async with self._lock:
            await self._commit_to_kafka({}, now=True)
            for tp in revoked:
                self._positioned.discard(tp)
                self._written.pop(tp, None)
                self._watermarks.pop(tp, None)
                self._rebuilding.pop(tp, None)  # the new owner reads the target from Redis
                # The partition's new owner reports its lag; a stale value here would be
                # counted twice by sums over processors.
                self._metrics.consumer_lag.remove(str(tp.partition))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, processor: UsageProcessor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._processor.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._processor.on_assigned(assigned)
