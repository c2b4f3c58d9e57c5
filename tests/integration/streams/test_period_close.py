"""The period closer against a real Redis: statements, rollups, tiers, lateness, concurrency.

Events go through the processor's own batch step (`UsageProcessor.process` with the mapper,
the gauge month shadows and `RedisStateStore.apply`) on fake partitions, so these tests need
Redis only; tests/integration/runtime/test_backfill.py runs the whole thing through Kafka.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from metering.core.account_codec import account_from_json
from metering.core.deltas import AccountDelta, Aggregation, Contribution
from metering.core.directory import Directory
from metering.core.gauge_months import GaugeMonths
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.periods import PeriodKind
from metering.core.plan_loading import load_plan
from metering.core.ports import ApplyStep, CloseStatus, CloseStep, Freeze, MeterRule
from metering.core.rfc3339 import parse_ms
from metering.core.rollups import period_from_key, statement_id
from metering.runtime.backfill import _HeldOutboxes, _NoCommits, _SideCounts
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from sinks.side_outputs import SideOutputs
from streams.metrics import ProcessorMetrics
from streams.period_close import CloserConfig, PassReport, PeriodCloser
from streams.processor import ProcessorConfig, UsageProcessor
from tests.unit.helpers import PLANS

pytestmark = pytest.mark.integration

PLAN = load_plan(Path(__file__).parents[1] / "plans" / "close-plan.toml")
TOPIC = "usage"
GROUP = "g"
HOUR = 3_600_000
RETENTION_MS = 400 * 86_400_000
_ids = itertools.count()


@dataclass
class Record:
    """What `UsageProcessor.process` reads of a Kafka record."""

    offset: int
    key: bytes
    value: bytes
    timestamp: int


def doc(account: str, event_type: str, time: str, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e{next(_ids)}",
        "source": "tests",
        "type": event_type,
        "subject": account,
        "time": time,
        "data": data,
    }


class Stream:
    """The processor's batch step over fake partitions of one topic."""

    def __init__(
        self,
        store: RedisStateStore,
        directory: Directory,
        *,
        topic: str = TOPIC,
        group: str = GROUP,
        side: _SideCounts | None = None,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.group = group
        self.side = side or _SideCounts()
        self.offsets: dict[int, int] = {}
        self.processor = UsageProcessor(
            config=ProcessorConfig(topic=topic, group=group, dedup_window_s=86_400),
            consumer=_NoCommits(),
            store=store,
            mapper=GaugeMonths(
                PlanMapper(directory, MapperLimits(grace_ms=HOUR)),
                directory,
                grace_ms=HOUR,
                retention_ms=RETENTION_MS,
            ),
            side_outputs=cast(SideOutputs, self.side),
            publisher=cast(OutboxPublisher, _HeldOutboxes()),
            metrics=ProcessorMetrics.create(CollectorRegistry()),
        )

    async def feed(self, partition: int, docs: list[dict[str, Any]]) -> None:
        """One batch of `docs` on `partition` (offsets continue from the last batch)."""
        start = self.offsets.get(partition, 0)
        records = [
            Record(start + i, d["subject"].encode(), orjson.dumps(d), parse_ms(d["time"]))
            for i, d in enumerate(docs)
        ]
        self.offsets[partition] = start + len(records)
        await self.processor.process({TopicPartition(self.topic, partition): records})

    def closer(self, store: RedisStateStore, **config: Any) -> PeriodCloser:
        async def partitions() -> list[int]:
            return [0, 1, 2]

        return PeriodCloser(
            store,
            self.directory,
            CloserConfig(
                self.group, self.topic, grace_ms=HOUR, retention_ms=RETENTION_MS, **config
            ),
            partitions=partitions,
        )


def directory_of(*accounts: tuple[str, str]) -> Directory:
    d = Directory()
    d.put_plan(PLAN)
    d.put_plan(PLANS["clerk"])
    for account, plan in accounts:
        d.put_account(account_from_json({"id": account, "plan": plan}))
    return d


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(redis_url)
    yield s
    await s.close()


async def outbox(store: RedisStateStore, account: str, kind: str) -> list[dict[str, Any]]:
    return [
        orjson.loads(e.fields["body"])
        for e in await store.read_outbox(account, count=100_000)
        if e.fields.get("kind") == kind
    ]


def searches(account: str, month: str, n: int, day: int = 10) -> list[dict[str, Any]]:
    return [
        doc(
            account,
            "search.viewed",
            f"{month}-{day:02d}T10:{i // 60:02d}:{i % 60:02d}Z",
            surface="page",
        )
        for i in range(n)
    ]


def tier_rows(tiers: list[dict[str, Any]], ladder: str) -> list[tuple[Any, ...]]:
    return [
        (t["as_of"], t["up_to"], t["change"], t["months_used"])
        for t in tiers
        if t["ladder"] == ladder
    ]


async def test_closed_months_give_statements_rollups_and_tier_placements(
    store: RedisStateStore,
) -> None:
    stream = Stream(store, directory_of(("a1", "close-plan")))
    history = {"2026-07": 20, "2026-08": 20, "2026-09": 30, "2026-10": 20}  # Sept: a spike
    for month, n in history.items():
        docs = searches("a1", month, n)
        docs.append(doc("a1", "recommendation.viewed", f"{month}-11T10:00:00Z", quantity=7))
        docs += [
            doc(
                "a1", "email.sent", f"{month}-12T10:00:0{i}Z", contact=f"c{i % 2}", kind="marketing"
            )
            for i in range(3)
        ]
        await stream.feed(0, docs)
    await stream.feed(0, searches("a1", "2026-11", 1, day=2))  # the watermark passes October

    report = await stream.closer(store).close_pass()

    rollups = await store.rollups("a1", ["searches", "views", "active", "daily_sends"])
    assert rollups["searches"] == history
    assert rollups["views"] == dict.fromkeys(history, 7)
    assert rollups["active"] == dict.fromkeys(history, 2)  # distinct contacts per month
    assert rollups["daily_sends"] == {f"d{m}-12": 3 for m in history}
    statements = await outbox(store, "a1", "statement")
    assert len(statements) == 3 * 4 + 4 == report.statements  # 3 monthly meters, 4 days
    by_id = {s["id"]: s for s in statements}
    assert len(by_id) == len(statements)
    july = by_id[statement_id("a1", "searches", "2026-07")]
    assert (july["total"], july["start"], july["end"]) == (
        20,
        "2026-07-01T00:00:00Z",
        "2026-08-01T00:00:00Z",
    )
    tiers = await outbox(store, "a1", "tier")
    # First placement on July alone (provisional), complete with September; the September
    # spike (30 > 25) and October leave the average at 23.33: "up to 25" throughout.
    assert tier_rows(tiers, "search") == [
        ("2026-07", 25, "first", 1),
        ("2026-09", 25, "completed", 3),
    ]
    placements = await store.placements("a1")
    assert placements["search"]["as_of"] == "2026-10"
    assert placements["search"]["average"] == "70/3"
    assert placements["search"]["months"] == [
        {"period": "2026-08", "total": 20},
        {"period": "2026-09", "total": 30},
        {"period": "2026-10", "total": 20},
    ]
    # Nothing is left open but November, and a second pass has nothing to do.
    assert set((await store.open_periods(["a1"]))["a1"]) == {"searches:2026-11"}
    again = await stream.closer(store).close_pass()
    assert (again.frozen, again.statements, again.tiers) == (0, 0, 0)


async def test_late_events_inside_the_grace_count_and_outside_it_do_not(
    store: RedisStateStore,
) -> None:
    stream = Stream(store, directory_of(("a1", "close-plan")))
    await stream.feed(0, searches("a1", "2026-07", 5))
    # 30 minutes into August: July's grace (1 h) is not over, so July is not due...
    await stream.feed(0, [doc("a1", "search.viewed", "2026-08-01T00:30:00Z", surface="page")])
    early = await stream.closer(store).close_pass()
    assert early.frozen == 0
    # ...and a July event arriving now is still counted.
    await stream.feed(0, [doc("a1", "search.viewed", "2026-07-31T23:59:00Z", surface="page")])
    # Now the watermark reaches July's end + grace: July is closed for the processor too.
    await stream.feed(0, [doc("a1", "search.viewed", "2026-08-01T01:00:00Z", surface="page")])
    await stream.feed(0, [doc("a1", "search.viewed", "2026-07-31T23:59:30Z", surface="page")])
    assert stream.side.late_records == 1

    report = await stream.closer(store).close_pass()

    assert (await store.rollups("a1", ["searches"]))["searches"] == {"2026-07": 6}
    [july] = await outbox(store, "a1", "statement")
    assert (july["period"], july["total"]) == ("2026-07", 6)
    assert report.statements == 1
    # August stays open (its end is not passed), with its own 2 searches.
    amounts = await store.read_amounts("a1", [("searches", "2026-08", Aggregation.COUNT)])
    assert amounts[("searches", "2026-08")] == 2


def contacts(account: str, event_type: str, time: str, names: list[str]) -> list[dict[str, Any]]:
    extra = {"origin": "import"} if event_type == "contact.added" else {}
    return [doc(account, event_type, time, contact=name, **extra) for name in names]


async def test_a_gauge_is_frozen_at_its_level_at_each_months_end(store: RedisStateStore) -> None:
    stream = Stream(store, directory_of(("a1", "close-plan")))
    july = [f"c{i}" for i in range(8)]
    await stream.feed(0, contacts("a1", "contact.added", "2026-07-05T10:00:00Z", july))
    await stream.feed(0, contacts("a1", "contact.deleted", "2026-07-20T10:00:00Z", ["c7"]))
    await stream.feed(0, contacts("a1", "contact.added", "2026-07-21T10:00:00Z", ["c7", "c8"]))
    # August: two leave (one of them twice), three join; September: nothing; October: many join.
    await stream.feed(0, contacts("a1", "contact.deleted", "2026-08-03T10:00:00Z", ["c0", "c1"]))
    await stream.feed(0, contacts("a1", "contact.deleted", "2026-08-04T10:00:00Z", ["c1"]))
    await stream.feed(
        0, contacts("a1", "contact.added", "2026-08-09T10:00:00Z", ["x1", "x2", "x3"])
    )
    await stream.feed(
        0, contacts("a1", "contact.added", "2026-10-09T10:00:00Z", [f"y{i}" for i in range(20)])
    )
    # Processed well past the month ends before any close runs (a backlog): the gauge now holds
    # 30 members, but each month is frozen at its own end.
    await stream.feed(0, contacts("a1", "contact.added", "2026-11-02T10:00:00Z", ["z1"]))

    await stream.closer(store).close_pass()

    levels = (await store.rollups("a1", ["customers"]))["customers"]
    assert levels == {"2026-07": 9, "2026-08": 10, "2026-09": 10, "2026-10": 30}
    amounts = await store.read_amounts("a1", [("customers", "", Aggregation.GAUGE)])
    assert amounts[("customers", "")] == 31
    audience = tier_rows(await outbox(store, "a1", "tier"), "audience")
    assert audience == [
        ("2026-07", 10, "first", 1),  # 9 -> "up to 10"
        ("2026-09", 10, "completed", 3),  # 9, 10, 10
        ("2026-10", 25, "up", 3),  # 10, 10, 30: average 16.67
    ]
    statements = {s["period"]: s for s in await outbox(store, "a1", "statement")}
    assert statements["2026-08"]["measure"] == "level_at_end"
    assert statements["2026-08"]["aggregation"] == "gauge"
    # The month shadows are gone once applied; only November's is left.
    open_fields = (await store.open_periods(["a1"]))["a1"]
    assert set(open_fields) == {"customers~2026-11:2026-11"}


async def test_several_closers_decide_each_statement_and_tier_once(
    store: RedisStateStore,
) -> None:
    accounts = [(f"a{i}", "close-plan") for i in range(12)]
    stream = Stream(store, directory_of(*accounts))
    for month in ("2026-07", "2026-08", "2026-09"):
        docs = [d for i, _ in enumerate(accounts) for d in searches(f"a{i}", month, 5 + i)]
        await stream.feed(0, docs)
    await stream.feed(
        0, [d for i, _ in enumerate(accounts) for d in searches(f"a{i}", "2026-10", 1, day=2)]
    )

    closers = [stream.closer(store) for _ in range(4)]
    reports = await asyncio.gather(*(c.close_pass() for c in closers))
    again = await asyncio.gather(*(c.close_pass() for c in closers))

    total = PassReport()
    for report in [*reports, *again]:
        total.add(report)
    assert total.statements == 12 * 3
    tier_events = 0
    for i, _ in enumerate(accounts):
        statements = await outbox(store, f"a{i}", "statement")
        assert sorted(s["period"] for s in statements) == ["2026-07", "2026-08", "2026-09"]
        tiers = await outbox(store, f"a{i}", "tier")
        assert len({t["id"] for t in tiers}) == len(tiers)
        tier_events += len(tiers)
    assert total.tiers == tier_events > 0


async def test_an_idle_partition_holds_back_only_its_own_accounts(store: RedisStateStore) -> None:
    stream = Stream(store, directory_of(("busy", "close-plan"), ("quiet", "close-plan")))
    await stream.feed(1, searches("quiet", "2026-07", 3))  # then nothing on partition 1
    await stream.feed(0, searches("busy", "2026-07", 4))
    await stream.feed(0, searches("busy", "2026-09", 1))

    report = await stream.closer(store).close_pass()

    assert (await store.rollups("busy", ["searches"]))["searches"] == {"2026-07": 4, "2026-08": 0}
    assert (await store.rollups("quiet", ["searches"]))["searches"] == {}
    assert report.waiting == 1  # quiet's July is months overdue by the wall clock
    # An event on partition 1 moves its watermark, and quiet's months close.
    await stream.feed(1, searches("quiet", "2026-09", 1))
    await stream.closer(store).close_pass()
    assert (await store.rollups("quiet", ["searches"]))["searches"] == {"2026-07": 3, "2026-08": 0}


async def test_the_close_step_freezes_only_what_it_reads_and_only_once(
    store: RedisStateStore,
) -> None:
    delta = AccountDelta("a1")
    delta.add(Contribution("searches", "2026-07", Aggregation.COUNT, amount=5))
    delta.note_event("e1", 0)
    end = period_from_key(PeriodKind.CALENDAR_MONTH, "2026-07", "UTC").end_ms
    rules = {("searches", "2026-07"): MeterRule(limit=None, period_end_ms=end)}
    await store.apply([ApplyStep(delta, TOPIC, 0, rules)], dedup_window_s=60, now_ms=end)

    def step(expected: int) -> CloseStep:
        sid = statement_id("a1", "searches", "2026-07")
        body = orjson.dumps({"id": sid, "total": expected})
        return CloseStep(
            "a1", (Freeze("searches", "2026-07", "c", expected, sid, body, "searches:2026-07"),)
        )

    refused = await store.close_periods(step(4))
    assert (refused.status, refused.frozen, refused.outbox_length) == (CloseStatus.MISMATCH, 0, 0)
    assert (await store.rollups("a1", ["searches"]))["searches"] == {}
    done = await store.close_periods(step(5))
    assert (done.status, done.frozen, done.statements, done.outbox_length) == (
        CloseStatus.DONE,
        1,
        1,
        1,
    )
    replay = await store.close_periods(step(5))  # a closer that crashed before it knew
    assert (replay.status, replay.frozen, replay.statements, replay.outbox_length) == (
        CloseStatus.DONE,
        0,
        0,
        1,
    )
    assert (await store.open_periods(["a1"]))["a1"] == {}


async def test_the_clerk_seed_tiers_from_three_closed_months(store: RedisStateStore) -> None:
    """Clerk.io: "If your monthly avg. amount of searches are 20.000, you will be in the
    'up to 25.000' tier", and likewise recommendations, e-mails, snippets and customers."""
    stream = Stream(store, directory_of(("shop", "clerk")))
    tz = "Europe/Copenhagen"
    usage = {
        "searches": [19_000, 20_000, 21_000],
        "recommendation_views": [180_000, 200_000, 220_000],
        "emails_sent": [40_000, 40_000, 40_000],
        "snippet_opens": [35_000, 40_000, 45_000],
    }
    months = ["2026-05", "2026-06", "2026-07"]
    # Counters at the seed's scale are written as the store's apply step writes them (one step
    # per month); the 22,000 customers go through the processor's step as events.
    for offset, month in enumerate(months):
        end = period_from_key(PeriodKind.CALENDAR_MONTH, month, tz).end_ms
        delta = AccountDelta("shop")
        rules = {}
        for meter, totals in usage.items():
            delta.add(Contribution(meter, month, Aggregation.COUNT, amount=totals[offset]))
            rules[(meter, month)] = MeterRule(limit=None, period_end_ms=end)
        delta.note_event(f"bulk-{month}", offset)
        await store.apply([ApplyStep(delta, TOPIC, 0, rules)], dedup_window_s=60, now_ms=end)
    stream.offsets[0] = len(months)
    customers = [f"cust{i}" for i in range(22_100)]
    await stream.feed(0, contacts("shop", "contact.added", "2026-05-03T10:00:00Z", customers))
    await stream.feed(
        0, contacts("shop", "contact.deleted", "2026-06-03T10:00:00Z", customers[:100])
    )
    await stream.feed(0, contacts("shop", "contact.added", "2026-08-02T10:00:00Z", ["late"]))

    await stream.closer(store).close_pass()

    placements = await store.placements("shop")
    got = {name: (p["up_to"], p["average"], p["complete"]) for name, p in placements.items()}
    assert got == {
        "search": (25_000, "20000", True),
        "recommendations": (250_000, "200000", True),
        "email": (50_000, "40000", True),
        "email_snippets": (50_000, "40000", True),
        "audience": (25_000, "66100/3", True),  # 22,100, 22,000, 22,000 customers
    }
    tiers = await outbox(store, "shop", "tier")
    assert tier_rows(tiers, "search") == [
        ("2026-05", 25_000, "first", 1),
        ("2026-07", 25_000, "completed", 3),
    ]
    last = {t["ladder"]: t for t in tiers}  # each ladder's events are in as_of order
    assert {name: (t["as_of"], t["complete"]) for name, t in last.items()} == dict.fromkeys(
        got, ("2026-07", True)
    )
    [july] = [t for t in tiers if t["ladder"] == "search" and t["as_of"] == "2026-07"]
    assert july["months"] == [
        {"period": "2026-05", "total": 19_000},
        {"period": "2026-06", "total": 20_000},
        {"period": "2026-07", "total": 21_000},
    ]
    assert july["average_display"] == "20000.00"
    statements = await outbox(store, "shop", "statement")
    assert len(statements) == 5 * 3
    assert {s["start"] for s in statements if s["period"] == "2026-07"} == {"2026-06-30T22:00:00Z"}


class _LateLog(_SideCounts):
    """Records what goes to the late topic: (partition, offset, meters)."""

    def __init__(self) -> None:
        super().__init__()
        self.late_sent: list[tuple[int, int, list[str]]] = []

    async def late(self, source: Any, key: Any, value: Any, *, meters: list[str]) -> None:
        await super().late(source, key, value, meters=meters)
        self.late_sent.append((source.partition, source.offset, meters))


async def test_a_closed_period_never_changes_from_a_partition_that_never_carried_an_event(
    store: RedisStateStore,
) -> None:
    late = _LateLog()
    stream = Stream(store, directory_of(("a1", "close-plan")), side=late)
    await stream.feed(0, searches("a1", "2026-07", 5))
    await stream.feed(0, [doc("a1", "recommendation.viewed", "2026-07-03T10:00:00Z", quantity=2)])
    await stream.feed(0, searches("a1", "2026-09", 1, day=2))  # July and August are due
    await stream.closer(store).close_pass()
    before = await store.rollups("a1", ["searches", "views"])
    assert before == {
        "searches": {"2026-07": 5, "2026-08": 0},  # a ladder: its quiet month is frozen at 0
        "views": {"2026-07": 2},  # no ladder: August had no usage, nothing to freeze
    }

    # Partition 1 never carried an event: its watermark is 0, the processor judges nothing
    # late. The store knows better: July is frozen, August ends before a1's closed-through.
    await stream.feed(
        1,
        [
            doc("a1", "search.viewed", "2026-07-20T10:00:00Z", surface="page"),
            doc("a1", "recommendation.viewed", "2026-08-15T10:00:00Z", quantity=4),
            doc("a1", "search.viewed", "2026-08-15T10:00:00Z", surface="page"),
            doc("a1", "search.viewed", "2026-09-03T10:00:00Z", surface="page"),  # open: counts
        ],
    )

    assert late.late_sent == [(1, 0, ["searches"]), (1, 1, ["views"]), (1, 2, ["searches"])]
    amounts = await store.read_amounts(
        "a1",
        [
            ("searches", "2026-07", Aggregation.COUNT),
            ("searches", "2026-08", Aggregation.COUNT),
            ("views", "2026-08", Aggregation.SUM),
            ("searches", "2026-09", Aggregation.COUNT),
        ],
    )
    assert amounts == {
        ("searches", "2026-07"): 5,
        ("searches", "2026-08"): 0,
        ("views", "2026-08"): 0,
        ("searches", "2026-09"): 2,
    }
    assert set(await store.open_periods(["a1"])) == {"a1"}
    assert set((await store.open_periods(["a1"]))["a1"]) == {"searches:2026-09"}
    # Nothing for the closer to repair or re-publish: rollups and statements stay as they were.
    statements = len(await outbox(store, "a1", "statement"))
    await stream.closer(store).close_pass()
    assert await store.rollups("a1", ["searches", "views"]) == before
    assert len(await outbox(store, "a1", "statement")) == statements
