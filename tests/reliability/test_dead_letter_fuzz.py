"""Fuzzed records through a real processor: every record it cannot count lands in the
dead-letter topic, untouched, with the reason the mapper gives; the stream keeps flowing.

tests/integration/streams/test_processor.py sends one hand-made record per reason. Here a seeded
generator sends a few hundred hostile records (random bytes, byte-level mutations of valid
events, valid events with one field replaced by a hostile value, oversized records, empty
values, odd keys) between valid ones, on one partition so that the order is known. The
oracle is the pure mapper (`PlanMapper`) run over the same records in the same order with the
same watermark rule, as `UsageProcessor._read` does: its verdict per offset must match what
the processor did (dead letter with that reason, late, or counted).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from metering.core.account_codec import account_from_json
from metering.core.deltas import Aggregation
from metering.core.directory import Directory
from metering.core.errors import EventRejected, RejectReason
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.plan_loading import load_plan
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    PLAN_FILE,
    TopicFactory,
    caught_up,
    event,
    make_settings,
    now_ms,
    produce,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

RECORDS = 600
ACCOUNTS = ["acme", "beta"]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63,
    1.5,
    "",
    " ",
    "{x}",
    "\x00",
    "a" * 300,
    "😀" * 200,
    [],
    {},
    {"nested": [1, {"deep": None}]},
    "2026-11-23",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
]


def valid(rng: random.Random, base_ms: int) -> dict[str, Any]:
    roll = rng.random()
    account = rng.choice(ACCOUNTS)
    at = base_ms - rng.randrange(3_600_000)
    if roll < 0.5:
        return event(
            account, "email.sent", time_ms=at, contact=f"c{rng.randrange(30)}", kind="marketing"
        )
    if roll < 0.7:
        return event(account, "recommendation.viewed", time_ms=at, quantity=rng.randrange(1, 5))
    if roll < 0.85:
        return event(
            account, "contact.added", time_ms=at, contact=f"p{rng.randrange(30)}", origin="api"
        )
    return event(account, "sms.sent", time_ms=at, contact=f"c{rng.randrange(30)}", quantity=1)


def hostile(rng: random.Random, base_ms: int) -> tuple[bytes | None, bytes | None]:
    """One hostile (key, value); every few a valid event so that counting goes on."""
    roll = rng.random()
    doc = valid(rng, base_ms)
    key: bytes | None = str(doc["subject"]).encode()
    if roll < 0.15:
        return key, orjson.dumps(doc)
    if roll < 0.30:
        return rng.choice([None, b"", rng.randbytes(8)]), rng.randbytes(rng.randrange(0, 300))
    if roll < 0.55:
        raw = bytearray(orjson.dumps(doc))
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(raw))
            raw[at] ^= 1 << rng.randrange(8)
        return key, bytes(raw)
    if roll < 0.85:
        if rng.random() < 0.5:
            doc[rng.choice(["specversion", "id", "source", "type", "subject", "time"])] = (
                rng.choice(HOSTILE_VALUES)
            )
        else:
            doc["data"][rng.choice(["contact", "quantity", "kind", "origin"])] = rng.choice(
                HOSTILE_VALUES
            )
        return key, orjson.dumps(doc)
    if roll < 0.9:
        return key, None
    if roll < 0.95:
        doc["data"]["contact"] = "x" * 70_000
        return key, orjson.dumps(doc)
    doc["subject"] = f"nobody-{rng.randrange(1000)}"
    return key, orjson.dumps(doc)


@asynccontextmanager
async def processor(settings: Settings) -> AsyncIterator[CollectorRegistry]:
    registry = CollectorRegistry()
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=registry))
    try:
        yield registry
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def oracle(
    settings: Settings, records: list[tuple[bytes | None, bytes | None]], now: int
) -> list[str]:
    """Per offset: a reject reason, "late", or "counted" — the pure mapper's verdict on the
    record's key and value (a key naming another account than the subject is `key_mismatch`)."""
    directory = Directory()
    directory.put_plan(load_plan(PLAN_FILE))
    for account in ACCOUNTS:
        directory.put_account(account_from_json({"id": account, "plan": "it-plan"}))
    mapper = PlanMapper(
        directory,
        MapperLimits.from_settings(settings),
    )
    watermark = 0
    verdicts = []
    for key, value in records:
        try:
            mapped = mapper.map(value, now_ms=now, watermark_ms=watermark, key=key)
        except EventRejected as refusal:
            verdicts.append(str(refusal.reason))
            continue
        watermark = max(watermark, mapped.time_ms)
        verdicts.append("late" if mapped.late and not mapped.contributions else "counted")
    return verdicts


async def test_fuzzed_records_are_dead_lettered_with_their_reason_and_counting_goes_on(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory
) -> None:
    settings = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=1)
    await publish_config(settings, [{"id": a, "plan": "it-plan"} for a in ACCOUNTS])
    rng = random.Random(20261123)
    base = now_ms() - 7_200_000
    records = [hostile(rng, base) for _ in range(RECORDS)]
    sentinel = event("acme", "email.sent", event_id="sentinel", contact="zz", kind="marketing")
    records.append((b"acme", orjson.dumps(sentinel)))
    before = now_ms()
    store = RedisStateStore.from_url(redis_url)
    try:
        async with processor(settings) as registry:
            await produce(settings, records)
            await wait_until(lambda: caught_up(settings, store), what="catch-up")
            after = now_ms()
        month_counts = await store.read_amounts(
            "acme", [("emails", _month(after), Aggregation.COUNT)]
        )
    finally:
        await store.close()

    expected = oracle(settings, records, before)
    # A record stamped just beyond now + 5 min when produced may be on time for the processor
    # a moment later: such a record may be either.
    loose = oracle(settings, records, after)
    ambiguous = {i for i, (a, b) in enumerate(zip(expected, loose, strict=True)) if a != b}
    rejected = {i: v for i, v in enumerate(expected) if v not in ("late", "counted")}
    assert len(rejected) > RECORDS // 3, Counter(expected)
    assert set(Counter(rejected.values())) >= {"not_json", "wrong_type", "oversized"}

    dead = await read_topic(settings, settings.dead_letter_topic, expect=len(rejected))
    by_offset: dict[int, Any] = {}
    for record in dead:
        headers = dict(record.headers)
        topic, partition, offset = headers["source"].decode().rsplit("/", 2)
        assert (topic, partition) == (settings.events_topic, "0")
        by_offset[int(offset)] = record
    assert len(by_offset) == len(dead), "a record was dead-lettered twice"
    assert set(by_offset) - ambiguous == set(rejected) - ambiguous
    for offset, record in by_offset.items():
        headers = dict(record.headers)
        if offset not in ambiguous:
            assert headers["reason"].decode() == rejected[offset], (offset, records[offset][1])
        assert headers["reason"].decode() in {r.value for r in RejectReason}
        assert record.value == records[offset][1]  # the original bytes, untouched
        assert record.key == records[offset][0]
        assert len(headers["detail"]) <= 1024
    counts = Counter(expected[i] for i in by_offset if i not in ambiguous)
    for reason, count in counts.items():
        metric = registry.get_sample_value("metering_events_rejected_total", {"reason": reason})
        assert (metric or 0) >= count, reason
    late = [i for i, v in enumerate(expected) if v == "late" and i not in ambiguous]
    if late:
        got = await read_topic(settings, settings.late_topic, expect=len(late))
        assert len(got) >= len(late)
    # The stream kept flowing: the last, valid record was counted.
    assert month_counts[("emails", _month(after))] >= 1
    applied = registry.get_sample_value("metering_events_applied_total") or 0
    assert applied >= 1


def _month(ms: int) -> str:
    from metering.core.periods import PeriodKind, period_of  # noqa: PLC0415

    return period_of(PeriodKind.CALENDAR_MONTH, ms, "UTC").key
