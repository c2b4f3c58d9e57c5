"""The processor's guards against losing state, without Kafka or Redis (fakes of both).

Three bugs the fault suite found, each pinned here so that a regression fails `pytest`
in a second even where the stack is not running:

1. A failure in the rebalance listener (StateLost: Redis lost its state and the log's start
   was deleted) was logged by aiokafka and swallowed; the consumer resumed from Kafka's
   committed offsets and counted the open month from there. `run` must raise it.
2. aiokafka hands `getmany` records of a new partition (from Kafka's committed offset) while
   the listener is still reading Redis. Applied, they set fences above the replay that the
   listener then starts, and the replay skips everything below them. They must not be applied.
3. Redis emptied under a running processor: it went on from its in-memory offsets, counting
   from zero. The store marker must stop it before it writes.
4. Redis gone back in time under a running processor (restored from a backup, or a host crash
   losing the last second of `appendfsync everysec`): same, from a position lower than the one
   it wrote. It must stop before it writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from metering.core.account_codec import account_from_json
from metering.core.directory import Directory
from metering.core.errors import StateLost
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.plan_loading import load_plan
from metering.core.ports import ApplyOutcome, ApplyStatus, ApplyStep
from metering.core.rfc3339 import format_ms
from streams.metrics import ProcessorMetrics
from streams.processor import ProcessorConfig, UsageProcessor
from tests.integration.harness import PLAN_FILE

TOPIC = "usage"
TP = TopicPartition(TOPIC, 0)
NOW = 1_795_428_000_000


@dataclass
class Record:
    offset: int
    value: bytes
    key: bytes = b"acme"
    timestamp: int = NOW


def records(first: int, last: int) -> list[Record]:
    return [
        Record(
            offset,
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": f"e{offset}",
                    "source": "t",
                    "type": "email.sent",
                    "subject": "acme",
                    "time": format_ms(NOW - 60_000),
                    "data": {"contact": "c", "kind": "marketing"},
                }
            ),
        )
        for offset in range(first, last + 1)
    ]


@dataclass
class FakeStore:
    """The calls of `RedisStateStore` the processor makes, in memory."""

    marker: str | None = None
    stored_positions: dict[int, tuple[int, int]] = field(default_factory=dict)
    fences: bool = False
    applied: list[tuple[int, int]] = field(default_factory=list)
    """(first, last) offsets of every applied step."""
    positions_gate: asyncio.Event | None = None
    """When set, `positions` waits for it (a slow Redis during the listener)."""
    rebuilding: dict[int, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    """The order of marker writes and rebuild marks (the API must never see a marker first)."""

    async def store_marker(self) -> str | None:
        return self.marker

    async def mark_rebuilding(self, topic: str, partition: int, until_offset: int) -> None:
        self.rebuilding[partition] = until_offset
        self.events.append(f"rebuilding {partition} until {until_offset}")

    async def rebuilding_targets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        return {p: self.rebuilding[p] for p in partitions if p in self.rebuilding}

    async def finish_rebuilding(self, topic: str, partitions: Sequence[int]) -> None:
        for partition in partitions:
            del self.rebuilding[partition]
            self.events.append(f"rebuilt {partition}")

    async def marker_and_positions(
        self, group: str, topic: str, partitions: Sequence[int]
    ) -> tuple[str | None, dict[int, int]]:
        stored = {p: self.stored_positions[p][0] for p in partitions if p in self.stored_positions}
        return self.marker, stored

    async def claim_store_marker(self, token: str) -> str:
        if self.marker is None:
            self.marker = token
            self.events.append("marker")
        return self.marker

    async def has_fences(self, topic: str) -> bool:
        return self.fences

    async def positions(
        self, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, tuple[int, int]]:
        if self.positions_gate is not None:
            await self.positions_gate.wait()
        return {p: self.stored_positions[p] for p in partitions if p in self.stored_positions}

    async def apply(
        self, steps: Sequence[ApplyStep], *, dedup_window_s: int, now_ms: int
    ) -> list[ApplyOutcome]:
        for step in steps:
            self.applied.append((step.delta.first_offset, step.delta.last_offset))
        return [ApplyOutcome(ApplyStatus.APPLIED) for _ in steps]

    async def advance_positions(
        self,
        group: str,
        topic: str,
        positions: Mapping[int, tuple[int, int]],
        *,
        applied_ms: int,
    ) -> None:
        self.stored_positions.update(positions)

    async def index_outboxes(self, accounts: Iterable[str]) -> None:
        return None


class FakeConsumer:
    """Scripted `getmany` results; the listener runs as aiokafka runs it, in another task."""

    def __init__(self, committed: int | None, beginning: int = 0) -> None:
        self._committed = committed
        self._beginning = beginning
        self.script: list[Any] = []
        self.listener: Any = None
        self.paused: set[TopicPartition] = set()
        self.sought: dict[TopicPartition, int] = {}
        self.listener_task: asyncio.Task[None] | None = None

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[Record]]:
        await asyncio.sleep(0.01)
        if not self.script:
            return {}
        step = self.script.pop(0)
        if step == "assign":
            self.listener_task = asyncio.create_task(self.listener.on_partitions_assigned({TP}))
            await asyncio.sleep(0.01)
            return {}
        if callable(step):
            return step()  # type: ignore[no-any-return]
        return {TP: step}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp] = offset

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.sought[tp] = self._beginning

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._committed

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self._beginning)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        return None


class NoSideOutputs:
    async def flush(self) -> None:
        return None

    async def dead_letter(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing here is rejected")

    async def late(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing here is late")


class NoPublisher:
    async def publish_accounts(self, accounts: list[str]) -> int:
        return 0


def processor(consumer: FakeConsumer, store: FakeStore, *, linger_ms: int = 0) -> UsageProcessor:
    directory = Directory()
    directory.put_plan(load_plan(PLAN_FILE))
    directory.put_account(account_from_json({"id": "acme", "plan": "it-plan"}))
    proc = UsageProcessor(
        # Linger 0: one getmany per batch, so the scripted steps below are batch boundaries.
        config=ProcessorConfig(
            topic=TOPIC,
            group="g",
            dedup_window_s=3600,
            poll_timeout_ms=10,
            batch_linger_ms=linger_ms,
        ),
        consumer=consumer,  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        mapper=PlanMapper(directory, MapperLimits(grace_ms=3_600_000)),
        side_outputs=NoSideOutputs(),  # type: ignore[arg-type]
        publisher=NoPublisher(),  # type: ignore[arg-type]
        metrics=ProcessorMetrics.create(CollectorRegistry()),
        clock_ms=lambda: NOW,
    )
    consumer.listener = proc.listener()
    return proc


async def run_script(proc: UsageProcessor, consumer: FakeConsumer, timeout_s: float = 5) -> None:
    """Run until the script is used up (then stop), or until `run` raises."""
    stop = asyncio.Event()

    async def stopper() -> None:
        for _ in range(int(timeout_s * 100)):  # bounded: the script is short
            listening = consumer.listener_task is not None and not consumer.listener_task.done()
            if not consumer.script and not listening:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        stop.set()

    watcher = asyncio.create_task(stopper())
    try:
        await asyncio.wait_for(proc.run(stop), timeout_s)
    finally:
        watcher.cancel()


async def test_a_failing_listener_stops_the_processor_before_it_applies_anything() -> None:
    """Redis empty, Kafka committed 500, the log now starts at 200: StateLost must reach `run`
    (aiokafka only logs a listener's exception) and nothing may be applied."""
    consumer = FakeConsumer(committed=500, beginning=200)
    store = FakeStore()
    proc = processor(consumer, store)
    # What aiokafka would deliver from the committed offset once the listener "returned".
    consumer.script = ["assign", records(500, 520), records(521, 530)]
    with pytest.raises(StateLost, match="usage/0: Redis has no position"):
        await run_script(proc, consumer)
    assert store.applied == []
    assert TP in consumer.paused  # the partition stays paused: nothing more is fetched


@pytest.mark.parametrize("linger_ms", [0, 200])
async def test_records_handed_over_while_the_listener_runs_are_not_applied(
    linger_ms: int,
) -> None:
    """Redis lost its state (Kafka committed 300, log from 0): the listener will seek to 0 to
    rebuild, but while it reads Redis, records from the committed offset arrive. Applying them
    would set fences at 300+ and make the rebuild skip 0..299. With a linger, the stale records
    and the first records of the rebuild arrive in one batch: they must still be told apart."""
    gate = asyncio.Event()
    consumer = FakeConsumer(committed=300, beginning=0)
    store = FakeStore(positions_gate=gate)
    proc = processor(consumer, store, linger_ms=linger_ms)

    def stale_then_open() -> dict[Any, list[Record]]:
        gate.set()  # Redis answers after these records were handed over
        return {TP: records(300, 320)}

    consumer.script = ["assign", stale_then_open, records(0, 150), records(151, 320)]
    await run_script(proc, consumer)
    assert consumer.sought[TP] == 0
    # The replay starts at the beginning, in order; the stale records were never applied.
    assert store.applied[0][0] == 0, store.applied
    assert all(first <= last for first, last in store.applied), store.applied
    assert [first for first, _ in store.applied] == sorted(f for f, _ in store.applied)
    assert max(last for _, last in store.applied) == 320


async def test_an_emptied_redis_stops_the_processor_before_it_writes() -> None:
    """The marker vanishes between two batches (Redis restarted empty): StateLost, and the
    second batch is not applied into the empty store."""
    consumer = FakeConsumer(committed=None)
    store = FakeStore()
    proc = processor(consumer, store)

    def flushed() -> dict[Any, list[Record]]:
        store.marker = None
        store.stored_positions.clear()
        return {TP: records(11, 20)}

    consumer.script = ["assign", records(0, 10), flushed]
    with pytest.raises(StateLost, match="lost its state while this processor was running"):
        await run_script(proc, consumer)
    assert store.applied == [(0, 10)]


async def test_fences_without_marker_or_positions_refuse_to_replay() -> None:
    """A store that lost its state and then took writes: a replay would be cut by the fences."""
    consumer = FakeConsumer(committed=400, beginning=0)
    store = FakeStore(fences=True)
    proc = processor(consumer, store)
    consumer.script = ["assign", records(400, 410)]
    with pytest.raises(StateLost, match="fences but neither positions nor a store marker"):
        await run_script(proc, consumer)
    assert store.applied == []


async def test_positions_without_a_marker_are_adopted_and_a_marker_written() -> None:
    """A store written by a backfill (or before markers existed) has positions and no marker:
    the processor resumes after them and marks the store."""
    consumer = FakeConsumer(committed=None)
    store = FakeStore(stored_positions={0: (99, NOW - 60_000)}, fences=True)
    proc = processor(consumer, store)
    consumer.script = ["assign", records(100, 110)]
    await run_script(proc, consumer)
    assert consumer.sought[TP] == 100
    assert store.marker is not None
    assert store.applied == [(100, 110)]


async def test_a_redis_gone_back_in_time_stops_the_processor_before_it_writes() -> None:
    """Positions older than what the processor stored (marker intact): StateLost, naming the
    partition; the next batch is not applied on top of the older state."""
    consumer = FakeConsumer(committed=None)
    store = FakeStore()
    proc = processor(consumer, store)

    def restored() -> dict[Any, list[Record]]:
        store.stored_positions[0] = (5, NOW)  # a backup taken after offset 5
        return {TP: records(21, 30)}

    consumer.script = ["assign", records(0, 10), records(11, 20), restored]
    with pytest.raises(StateLost, match="usage/0: Redis went back in time: its position is 5"):
        await run_script(proc, consumer)
    assert store.applied == [(0, 10), (11, 20)]


async def test_a_rebuild_is_recorded_before_the_marker_and_cleared_when_replayed() -> None:
    """Redis lost its state while stopped (no positions, no fences, Kafka committed 30): the
    replay target is recorded before the marker (the API refuses meanwhile) and cleared by the
    batch whose position reaches it, not before."""
    consumer = FakeConsumer(committed=30, beginning=0)
    store = FakeStore()
    proc = processor(consumer, store)
    consumer.script = ["assign", records(0, 20), records(21, 28), records(29, 35)]
    await run_script(proc, consumer)
    assert store.events == ["rebuilding 0 until 30", "marker", "rebuilt 0"]
    assert store.rebuilding == {}
    assert store.applied == [(0, 20), (21, 28), (29, 35)]


async def test_a_processor_restarted_mid_rebuild_carries_the_target_on() -> None:
    """A rebuild interrupted by a crash: positions exist now, the target is still in Redis; the
    next owner reads it and clears it once its replay gets there."""
    consumer = FakeConsumer(committed=None)
    store = FakeStore(
        marker="m", stored_positions={0: (14, NOW - 60_000)}, rebuilding={0: 30}, fences=True
    )
    proc = processor(consumer, store)
    consumer.script = ["assign", records(15, 25)]
    await run_script(proc, consumer)
    assert store.rebuilding == {0: 30}  # not there yet
    consumer.script = [records(26, 31)]
    await run_script(proc, consumer)
    assert store.rebuilding == {}
    assert store.events == ["rebuilt 0"]
