"""Live processing and a backfill from Kafka give the same rollups, statements and tiers.

Four months of history (July-October 2026) for a few accounts are produced in event-time order
(with late events inside and outside the grace) to a fresh events topic. A processor runs
in-process with its closer until every month is closed and published; then
`metering backfill --from ... --redis-url <another database> --publish` (a subprocess, as an
operator runs it) rebuilds the state into a second Redis database and publishes to fresh
statement and tier topics. Everything the close decided must be equal, byte for byte.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from metering.core.account_codec import account_from_json
from metering.core.errors import BackfillRefused
from metering.core.periods import PeriodKind, period_of
from metering.core.plan_loading import load_plan
from metering.core.rfc3339 import format_ms, parse_ms
from metering.core.rollups import account_watermark, is_due
from metering.runtime.backfill import backfill
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from tests.conftest import Stack, _claim_db, _claim_key, _with_db
from tests.integration.harness import (
    REPO,
    TopicFactory,
    caught_up,
    encoded,
    env_of,
    make_settings,
    partitions_of,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration

PLANS = Path(__file__).parents[1] / "plans"
CLERK = REPO / "metering" / "core" / "plans_examples" / "clerk.toml"
ACCOUNTS = {"a1": "close-plan", "a2": "close-plan", "a3": "close-plan", "shop": "clerk"}
MONTHS = ["2026-07", "2026-08", "2026-09", "2026-10"]
SEARCHES = {  # per month: a1 has a one-month spike, a2 grows for good, a3 has quiet months
    "a1": [20, 20, 30, 20],
    "a2": [5, 12, 30, 60],
    "a3": [3, 0, 0, 4],
    "shop": [40, 35, 50, 45],
}


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    return replace(
        base,
        statements_topic=await topic_factory(1),
        tiers_topic=await topic_factory(1),
    )


@pytest.fixture
async def second_redis_url(
    stack: Stack, redis_db: int, _redis_db_numbers: Iterator[int]
) -> AsyncIterator[str]:
    """A second database of this test's own (claimed like `redis_db`), flushed."""
    token = uuid.uuid4().hex.encode()
    claims = aioredis.Redis.from_url(_with_db(stack.redis_url, 0))
    try:
        db = await _claim_db(claims, _redis_db_numbers, token)
        url = _with_db(stack.redis_url, db)
        client = aioredis.Redis.from_url(url)
        await client.flushdb()
        await client.aclose()
        yield url
        if await claims.get(_claim_key(db)) == token:
            await claims.delete(_claim_key(db))
    finally:
        await claims.aclose()


def history(seed: int = 7) -> list[tuple[int, dict[str, Any]]]:
    """(arrival time, event) in arrival order: event-time order, with a few late arrivals."""
    rng = random.Random(seed)
    timed: list[tuple[int, dict[str, Any]]] = []
    serial = iter(range(10**9))

    def add(
        account: str, event_type: str, time_ms: int, arrive_ms: int | None = None, **data: Any
    ) -> None:
        doc = {
            "specversion": "1.0",
            "id": f"{account}-{next(serial)}",
            "source": "tests",
            "type": event_type,
            "subject": account,
            "time": format_ms(time_ms),
            "data": data,
        }
        timed.append((time_ms if arrive_ms is None else arrive_ms, doc))

    for account in ACCOUNTS:
        members: set[str] = set()
        for index, month in enumerate(MONTHS):
            start = parse_ms(f"{month}-01T00:00:00Z")
            span = (
                parse_ms(
                    f"{MONTHS[index + 1]}-01T00:00:00Z" if index < 3 else "2026-11-01T00:00:00Z"
                )
                - start
            )

            def at(start: int = start, span: int = span) -> int:
                return start + int(span * rng.random())

            for _ in range(SEARCHES[account][index]):
                add(account, "search.viewed", at(), surface=rng.choice(["instant", "page"]))
            for _ in range(rng.randint(2, 6)):
                add(account, "recommendation.viewed", at(), quantity=rng.randint(1, 5))
            for _ in range(rng.randint(3, 9)):
                contact = f"c{rng.randint(0, 9)}"
                add(account, "email.sent", at(), contact=contact, kind="marketing")
                if account == "shop":
                    add(account, "email.opened", at(), contact=contact, with_recommendations=True)
            for _ in range(rng.randint(2, 8)):
                name = f"p{rng.randint(0, 40)}"
                if name in members and rng.random() < 0.4:
                    add(account, "contact.deleted", at(), contact=name)
                    members.discard(name)
                else:
                    add(account, "contact.added", at(), contact=name, origin="import")
                    members.add(name)
        # Late arrivals around the end of July (in the account's zone): inside the grace it
        # counts in July; once an event 2 h into August has passed the watermark beyond July's
        # end + 1 h, a July search goes to the late topic (a contact still counts: gauges have
        # no period; its month shadow is August's, the oldest month still open).
        zone = "Europe/Copenhagen" if account == "shop" else "UTC"
        end = period_of(PeriodKind.CALENDAR_MONTH, parse_ms("2026-07-15T00:00:00Z"), zone).end_ms
        add(account, "search.viewed", end - 60_000, arrive_ms=end + 20 * 60_000, surface="page")
        add(account, "search.viewed", end + 2 * 3_600_000, surface="page")
        add(account, "search.viewed", end - 90_000, arrive_ms=end + 3 * 3_600_000, surface="page")
        add(
            account,
            "contact.added",
            end - 30_000,
            arrive_ms=end + 4 * 3_600_000,
            contact="late",
            origin="import",
        )
        # Something in November moves every account's watermark past October's end + grace.
        add(account, "search.viewed", parse_ms("2026-11-02T09:00:00Z"), surface="page")
    timed.sort(key=lambda pair: pair[0])
    return timed


async def publish_config(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        for path in (PLANS / "close-plan.toml", CLERK):
            await writer.put_plan(load_plan(path).id, path.read_text(), path.name)
        for account, plan in ACCOUNTS.items():
            await writer.put_account(account_from_json({"id": account, "plan": plan}))
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str) -> list[Any]:
    """Every record of `topic`, up to its end offsets now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(settings, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[Any] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


async def closed_and_published(settings: Settings, store: RedisStateStore) -> bool:
    """Nothing due is left open (by each account's partition watermark), and every outbox
    was published."""
    parts = sorted(await partitions_of(settings, settings.events_topic))
    stored = await store.positions(settings.consumer_group, settings.events_topic, parts)
    marks = {p: wm for p, (_, wm) in stored.items()}
    accounts = list(ACCOUNTS)
    fences = await store.fenced_partitions(accounts, settings.events_topic, parts)
    opened = await store.open_periods(accounts)
    for account in accounts:
        wm = account_watermark(fences[account], marks) or 0
        if any(is_due(end, settings.grace_s * 1000, wm) for end in opened[account].values()):
            return False
    return not await store.sweep_outboxes()


async def snapshot(url: str) -> dict[str, Any]:
    """What the close decided, and the counters it read: rollups, placements, gauge month-end
    snapshots, counters, distinct and gauge sets, the open-period index."""
    client = aioredis.Redis.from_url(url)
    found: dict[str, Any] = {}
    try:
        async for raw in client.scan_iter(match="mtr:{*}:*", count=1000):
            key = raw.decode()
            kind = key.split("}:", 1)[1].split(":", 1)[0]
            if kind not in ("r", "t", "gs", "c", "s", "g", "p"):
                continue
            key_type = await client.type(raw)
            key_type = key_type.decode() if isinstance(key_type, bytes) else key_type
            if key_type == "string":
                found[key] = await client.get(raw)
            elif key_type == "hash":
                found[key] = await client.hgetall(raw)
            elif key_type == "set":
                found[key] = await client.smembers(raw)
    finally:
        await client.aclose()
    return found


def bodies(records: list[Any]) -> dict[str, bytes]:
    """id -> body; a body published twice (at least once delivery) must be the same."""
    seen: dict[str, bytes] = {}
    for record in records:
        key = orjson.loads(record.value)["id"]
        assert seen.setdefault(key, record.value) == record.value
    return seen


async def test_backfill_from_kafka_equals_live_processing(
    settings: Settings, second_redis_url: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    await publish_config(settings)
    timed = history()
    docs = [doc for _, doc in timed]
    store = RedisStateStore.from_url(settings.redis_url)
    try:
        stop = asyncio.Event()
        task = asyncio.create_task(run_until_stopped(settings, stop))
        try:
            # Month by month (each chunk ends 5 h into the next month), letting the live closer
            # close as it goes: several passes live, one pass in the backfill.
            since = 0
            for month in [*MONTHS[1:], "2026-11", "2026-12"]:
                until = parse_ms(f"{month}-01T05:00:00Z")
                chunk = [doc for arrive, doc in timed if since <= arrive < until]
                since = until
                await produce(settings, encoded(chunk))
                await wait_until(lambda: caught_up(settings, store), what="processor to catch up")
                await wait_until(
                    lambda: closed_and_published(settings, store), what="closer and publisher"
                )
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
    finally:
        await store.close()
    live_statements = bodies(await read_all(settings, settings.statements_topic))
    live_tiers = bodies(await read_all(settings, settings.tiers_topic))
    late = await read_all(settings, settings.late_topic)
    # One July search per account came after July's grace (a replay may send one twice).
    assert len({orjson.loads(r.value)["id"] for r in late}) == len(ACCOUNTS)

    again = replace(
        settings,
        statements_topic=await topic_factory(1),
        tiers_topic=await topic_factory(1),
        thresholds_topic=await topic_factory(1),
        # What the live publishers published is not on these topics: published afresh.
        publisher_progress_topic=await topic_factory(1),
        publisher_transactional_id=f"{settings.publisher_transactional_id}-again",
    )
    env = env_of(again)
    env["METERING_STATEMENTS_TOPIC"] = again.statements_topic
    env["METERING_TIERS_TOPIC"] = again.tiers_topic
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "metering.cli",
            "backfill",
            "--from",
            "2026-06-01T00:00:00Z",
            "--redis-url",
            second_redis_url,
            "--publish",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(docs):,}/{len(docs):,} events" in result.stderr  # the last progress line
    assert "ev/s" in result.stderr
    assert f"replayed {len(docs)} events" in result.stdout
    assert "gauge months not closed" not in result.stdout

    live, rebuilt = await snapshot(settings.redis_url), await snapshot(second_redis_url)
    assert sorted(live) == sorted(rebuilt)
    assert live == rebuilt
    frozen = {
        (key.split("}")[0][len("mtr:{") :], key.rsplit(":", 1)[1], period.decode())
        for key, fields in live.items()
        if ":r:" in key
        for period in fields
    }
    published = {
        (s["account"], s["meter"], s["period"]) for s in map(orjson.loads, live_statements.values())
    }
    assert published == frozen, (sorted(frozen - published), sorted(published - frozen))
    assert len(frozen) > 100
    assert sum(1 for k in live if ":gs:" in k) == len(ACCOUNTS)  # gauge month-end snapshots
    assert sum(1 for k in live if k.endswith(":t")) == len(ACCOUNTS)  # placements
    backfill_statements = bodies(await read_all(again, again.statements_topic))
    backfill_tiers = bodies(await read_all(again, again.tiers_topic))
    assert backfill_statements == live_statements
    assert backfill_tiers == live_tiers
    # Sanity of what was compared: a1's spike month did not move its search tier.
    a1 = [orjson.loads(b) for b in live_tiers.values() if b'"a1"' in b]
    search = sorted((t["as_of"], t["up_to"], t["change"]) for t in a1 if t["ladder"] == "search")
    assert search == [("2026-07", 25, "first"), ("2026-09", 25, "completed")]


async def test_backfill_refuses_a_target_that_is_not_empty(
    settings: Settings, second_redis_url: str
) -> None:
    client = aioredis.Redis.from_url(second_redis_url)
    try:
        await client.set("something", "precious")
    finally:
        await client.aclose()
    with pytest.raises(BackfillRefused, match="holds 1 keys"):
        await backfill(settings, from_ms=0, target_url=second_redis_url, progress=None)
