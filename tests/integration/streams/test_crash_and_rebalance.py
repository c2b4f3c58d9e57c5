"""Crash and rebalance: processors killed (SIGKILL) or stopped mid-stream lose nothing and count
nothing twice; every expected crossing is published.

The ground truth is computed here in plain Python from the events produced (no metering code),
and compared with Redis once a final processor has caught up.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from metering.core.deltas import Aggregation
from metering.core.periods import PeriodKind, period_of
from metering.core.thresholds import crossing_id
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    ProcessorProcess,
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    now_ms,
    outboxes_drained,
    produce,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

ACCOUNTS = [f"acct-{i:02d}" for i in range(30)]
EMAIL_LIMIT = 100  # it-plan: at_risk at 80, exceeded above 100
CONTACT_LIMIT = 20  # it-plan: distinct active contacts


class Truth:
    """What the counters must be, from the events as produced."""

    def __init__(self) -> None:
        self.emails: dict[str, int] = defaultdict(int)
        self.contacts: dict[str, set[str]] = defaultdict(set)
        self.views: dict[str, int] = defaultdict(int)
        self.seen_ids: set[str] = set()

    def add(self, doc: dict[str, object]) -> None:
        if doc["id"] in self.seen_ids:  # a producer retry: counts once
            return
        self.seen_ids.add(str(doc["id"]))
        account = str(doc["subject"])
        data = doc["data"]
        assert isinstance(data, dict)
        if doc["type"] == "email.sent":
            self.emails[account] += 1
            self.contacts[account].add(str(data["contact"]))
        else:
            self.views[account] += int(data["quantity"])

    def crossings(self, month: str) -> set[str]:
        ids = set()
        for account in ACCOUNTS:
            used = self.emails[account]
            if used * 5 >= EMAIL_LIMIT * 4:
                ids.add(crossing_id(account, "emails", month, "at_risk"))
            if used > EMAIL_LIMIT:
                ids.add(crossing_id(account, "emails", month, "exceeded"))
            distinct = len(self.contacts[account])
            if distinct * 5 >= CONTACT_LIMIT * 4:
                ids.add(crossing_id(account, "active_contacts", month, "at_risk"))
            if distinct > CONTACT_LIMIT:
                ids.add(crossing_id(account, "active_contacts", month, "exceeded"))
        return ids


def stream(rng: random.Random, n: int, truth: Truth) -> list[dict[str, object]]:
    """`n` events with Zipf-ish skew over accounts, ~2% producer retries (same id again)."""
    weights = [1 / (i + 1) for i in range(len(ACCOUNTS))]
    docs: list[dict[str, object]] = []
    for _ in range(n):
        if docs and rng.random() < 0.02:
            doc = rng.choice(docs)
        else:
            account = rng.choices(ACCOUNTS, weights)[0]
            if rng.random() < 0.8:
                doc = event(
                    account, "email.sent", contact=f"c{rng.randrange(40)}", kind="marketing"
                )
            else:
                doc = event(account, "recommendation.viewed", quantity=rng.randrange(1, 4))
        truth.add(doc)
        docs.append(doc)
    return docs


async def check(settings: Settings, store: RedisStateStore, truth: Truth, month: str) -> None:
    for account in ACCOUNTS:
        amounts = await store.read_amounts(
            account,
            [
                ("emails", month, Aggregation.COUNT),
                ("active_contacts", month, Aggregation.DISTINCT),
                ("recommendation_views", month, Aggregation.SUM),
            ],
        )
        assert amounts == {
            ("emails", month): truth.emails[account],
            ("active_contacts", month): len(truth.contacts[account]),
            ("recommendation_views", month): truth.views[account],
        }, account
    expected = truth.crossings(month)
    records = await read_topic(settings, settings.thresholds_topic, expect=len(expected))
    published = [orjson.loads(r.value)["id"] for r in records]
    assert set(published) == expected


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=3)
    await publish_config(s, [{"id": a, "plan": "it-plan"} for a in ACCOUNTS])
    return s


async def test_sigkill_at_random_points_loses_and_doubles_nothing(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    rng = random.Random(20261123)
    truth = Truth()
    month = period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key
    log = tmp_path / "processor.log"
    store = RedisStateStore.from_url(redis_url)
    kills = 0
    proc = ProcessorProcess.start(settings, log, batch_max_records=200)
    try:
        for _ in range(6):
            await produce(settings, encoded(stream(rng, 1500, truth)))
            await asyncio.sleep(rng.uniform(0.5, 2.5))
            proc.kill()
            kills += 1
            proc = ProcessorProcess.start(settings, log, batch_max_records=200)
        await wait_until(lambda: caught_up(settings, store), timeout_s=180, what="catch-up")
        await wait_until(lambda: outboxes_drained(store), timeout_s=60, what="outboxes")
        assert proc.terminate() == 0, log.read_text()[-3000:]
        await check(settings, store, truth, month)
    finally:
        proc.stop_if_running()
        await store.close()
    assert kills == 6
    assert len(truth.seen_ids) > 8000


async def test_two_processors_one_stopped_mid_stream(
    settings: Settings, redis_url: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    truth = Truth()
    month = period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key
    store = RedisStateStore.from_url(redis_url)
    first = ProcessorProcess.start(settings, tmp_path / "first.log", batch_max_records=200)
    second = ProcessorProcess.start(settings, tmp_path / "second.log", batch_max_records=200)
    try:
        await first.ready()
        await second.ready()
        await produce(settings, encoded(stream(rng, 3000, truth)))
        await asyncio.sleep(1.0)
        assert first.terminate() == 0  # SIGTERM: drains its batch, leaves the group
        await produce(settings, encoded(stream(rng, 3000, truth)))
        await wait_until(lambda: caught_up(settings, store), timeout_s=180, what="catch-up")
        await wait_until(lambda: outboxes_drained(store), timeout_s=60, what="outboxes")
        assert second.terminate() == 0
        await check(settings, store, truth, month)
    finally:
        first.stop_if_running()
        second.stop_if_running()
        await store.close()
