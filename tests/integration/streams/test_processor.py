"""The usage processor end to end against the real Kafka and Redis of the test stack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from prometheus_client import CollectorRegistry

from metering.core.deltas import Aggregation
from metering.core.thresholds import crossing_id
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    now_ms,
    produce,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration


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


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    return await make_settings(kafka_bootstrap, redis_url, topic_factory)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(settings.redis_url)
    yield s
    await s.close()


def month_of(ms: int) -> str:
    from metering.core.periods import PeriodKind, period_of  # noqa: PLC0415

    return period_of(PeriodKind.CALENDAR_MONTH, ms, "UTC").key


async def test_counts_distincts_gauges_balances_and_publishes_crossings(
    settings: Settings, store: RedisStateStore
) -> None:
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    t = now_ms()
    month = month_of(t)
    docs = [event("acme", "email.sent", contact=f"c{i % 25}", kind="marketing") for i in range(90)]
    docs += [event("acme", "recommendation.viewed", quantity=3) for _ in range(4)]
    docs += [event("acme", "contact.added", contact=f"p{i}", origin="api") for i in range(45)]
    docs += [event("acme", "contact.deleted", contact=f"p{i}") for i in range(5)]
    docs += [event("acme", "sms.credits_added", quantity=500)]
    docs += [event("acme", "sms.sent", contact="c1", quantity=2) for _ in range(7)]
    async with processor(settings) as registry:
        await produce(settings, encoded(docs))
        await wait_until(lambda: caught_up(settings, store), what="processor to catch up")
        assert registry.get_sample_value("metering_events_applied_total") == len(docs)

    amounts = await store.read_amounts(
        "acme",
        [
            ("emails", month, Aggregation.COUNT),
            ("active_contacts", month, Aggregation.DISTINCT),
            ("recommendation_views", month, Aggregation.SUM),
            ("profiles", "", Aggregation.GAUGE),
            ("sms_credits", "", Aggregation.BALANCE),
        ],
    )
    assert amounts == {
        ("emails", month): 90,
        ("active_contacts", month): 25,
        ("recommendation_views", month): 12,
        ("profiles", ""): 40,
        ("sms_credits", ""): 486,
    }
    # emails: 80 of 100 -> at_risk (exceeded is strict: 90 is not above 100).
    # active_contacts: 25 of 20 -> at_risk and exceeded. profiles: 40 of 50 -> at_risk.
    expected = {
        crossing_id("acme", "emails", month, "at_risk"),
        crossing_id("acme", "active_contacts", month, "at_risk"),
        crossing_id("acme", "active_contacts", month, "exceeded"),
        crossing_id("acme", "profiles", "L50", "at_risk"),
    }
    records = await read_topic(settings, settings.thresholds_topic, expect=len(expected))
    bodies = [orjson.loads(r.value) for r in records]
    assert sorted(b["id"] for b in bodies) == sorted(expected)
    assert all(r.key == b"acme" for r in records)
    at_risk = next(b for b in bodies if b["meter"] == "emails")
    # `used` is the usage after the batch that crossed; the crossing lies in (before, used].
    assert at_risk["before"] < 80 <= at_risk["used"] <= 90
    assert (at_risk["limit"], at_risk["threshold"], at_risk["period"]) == (100, "at_risk", month)


BAD_INPUTS: list[tuple[str, bytes]] = [
    ("not_json", b"{nope"),
    ("not_object", b"[1, 2]"),
    (
        "missing_field",
        orjson.dumps({k: v for k, v in event("acme", "email.sent").items() if k != "id"}),
    ),
    ("wrong_type", orjson.dumps({**event("acme", "email.sent", contact="c"), "time": 12})),
    ("unknown_type", orjson.dumps(event("acme", "fax.sent"))),
    ("unknown_account", orjson.dumps(event("nobody", "email.sent", contact="c", kind="marketing"))),
    ("key_mismatch", orjson.dumps(event("other", "email.sent", contact="c", kind="marketing"))),
    ("negative_quantity", orjson.dumps(event("acme", "recommendation.viewed", quantity=-3))),
    ("absurd_quantity", orjson.dumps(event("acme", "recommendation.viewed", quantity=10**12))),
    ("oversized", orjson.dumps(event("acme", "email.sent", contact="c" * 70_000))),
    (
        "future_timestamp",
        orjson.dumps(event("acme", "email.sent", contact="c", time_ms=now_ms() + 3_600_000)),
    ),
]


async def test_bad_input_goes_to_the_dead_letter_topic_and_the_stream_keeps_flowing(
    settings: Settings, store: RedisStateStore
) -> None:
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    month = month_of(now_ms())
    good_before = encoded([event("acme", "email.sent", contact="a", kind="marketing")])
    good_after = encoded([event("acme", "email.sent", contact="b", kind="marketing")])
    # Keyed by acme, except the unknown account's event, keyed by its own subject (keyed by
    # acme it would be refused first for the key: key_mismatch, the next input).
    bad = [(b"nobody" if r == "unknown_account" else b"acme", value) for r, value in BAD_INPUTS]
    async with processor(settings) as registry:
        await produce(settings, good_before + bad + good_after)
        await wait_until(lambda: caught_up(settings, store), what="processor to catch up")
        for reason, _ in BAD_INPUTS:
            assert (
                registry.get_sample_value("metering_events_rejected_total", {"reason": reason}) == 1
            ), reason

    records = await read_topic(settings, settings.dead_letter_topic, expect=len(BAD_INPUTS))
    assert len(records) == len(BAD_INPUTS)
    by_reason = {dict(r.headers)["reason"].decode(): r for r in records}
    assert sorted(by_reason) == sorted(reason for reason, _ in BAD_INPUTS)
    for reason, value in BAD_INPUTS:
        record = by_reason[reason]
        assert record.value == value  # the original bytes, untouched
        assert dict(record.headers)["source"].startswith(settings.events_topic.encode())
    assert dict(by_reason["missing_field"].headers)["field"] == b"id"
    mismatch = dict(by_reason["key_mismatch"].headers)
    assert (mismatch["field"], by_reason["key_mismatch"].key) == (b"subject", b"acme")
    assert b"'acme' is not the subject 'other'" in mismatch["detail"]
    amounts = await store.read_amounts("acme", [("emails", month, Aggregation.COUNT)])
    assert amounts[("emails", month)] == 2


async def test_duplicates_count_once_and_late_events_go_to_the_late_topic(
    settings: Settings, store: RedisStateStore
) -> None:
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    t = now_ms()
    month = month_of(t)
    first = event("acme", "email.sent", event_id="retry-1", contact="a", kind="marketing")
    async with processor(settings):
        await produce(settings, encoded([first]))
        await wait_until(lambda: caught_up(settings, store), what="first event")
        # The producer retried: the same id again, in a later batch.
        await produce(settings, encoded([first, first]))
        # Three months ago is closed (its end + 1 h grace is long before the watermark).
        old = event(
            "acme", "email.sent", contact="z", kind="marketing", time_ms=t - 92 * 86_400_000
        )
        await produce(settings, encoded([old]))
        await wait_until(lambda: caught_up(settings, store), what="all events")

    amounts = await store.read_amounts("acme", [("emails", month, Aggregation.COUNT)])
    assert amounts[("emails", month)] == 1
    late = await read_topic(settings, settings.late_topic, expect=1)
    assert [orjson.loads(r.value)["id"] for r in late] == [old["id"]]
    assert dict(late[0].headers)["meters"] == b"emails,active_contacts"


async def test_a_limit_change_reaches_the_running_processor(
    settings: Settings, store: RedisStateStore
) -> None:
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    month = month_of(now_ms())
    async with processor(settings):
        await produce(
            settings,
            encoded([event("acme", "email.sent", contact="a", kind="marketing") for _ in range(5)]),
        )
        await wait_until(lambda: caught_up(settings, store), what="first events")
        # Permanent change: the e-mail limit drops to 5; the next send exceeds it.
        await publish_config(settings, [{"id": "acme", "plan": "it-plan", "limits": {"emails": 5}}])
        await asyncio.sleep(1.5)
        await produce(
            settings, encoded([event("acme", "email.sent", contact="a", kind="marketing")])
        )
        await wait_until(lambda: caught_up(settings, store), what="the event after the change")

    records = await read_topic(settings, settings.thresholds_topic, expect=2)
    ids = {orjson.loads(r.value)["id"] for r in records}
    assert crossing_id("acme", "emails", month, "exceeded") in ids
