"""emit() returns at once, flush() delivers exactly what was emitted, failures reach the
callback, and the buffer is bounded: against the real Kafka and a real processor."""

from __future__ import annotations

import asyncio
import random

import pytest

from metering.client import BufferFull, DeliveryError, SyncUsageProducer, UsageProducer
from metering.core.deltas import Aggregation
from metering.core.events import UsageEvent
from metering.core.periods import PeriodKind, period_of
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    TopicFactory,
    caught_up,
    make_settings,
    now_ms,
    publish_config,
    wait_until,
)
from tests.integration.streams.test_contracts import processor

pytestmark = pytest.mark.integration

ACCOUNTS = [f"sdk-{i}" for i in range(6)]


async def test_a_processor_counts_exactly_what_was_emitted_without_awaiting_each(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory
) -> None:
    settings = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    await publish_config(settings, [{"id": a, "plan": "it-plan"} for a in ACCOUNTS])
    rng = random.Random(19)
    emails = dict.fromkeys(ACCOUNTS, 0)
    views = dict.fromkeys(ACCOUNTS, 0)
    store = RedisStateStore.from_url(redis_url)
    try:
        async with processor(settings):
            async with UsageProducer.connect(
                kafka_bootstrap, source="sdk-emit", topic=settings.events_topic, max_buffered=500
            ) as usage:
                for i in range(3000):
                    account = rng.choice(ACCOUNTS)
                    if i % 3:
                        elements = rng.randint(1, 5)
                        event = usage.build("recommendation.viewed", account, quantity=elements)
                        views[account] += elements
                    else:
                        event = usage.build("email.sent", account, contact=f"c{i % 40}")
                        emails[account] += 1
                    while True:  # the async emit raises when 500 are in flight: make room
                        try:
                            usage.emit(event)
                            break
                        except BufferFull:
                            await usage.flush()
                await usage.flush()
                assert usage.buffered == 0
            await wait_until(lambda: caught_up(settings, store), what="the processor")
        month = period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key
        for account in ACCOUNTS:
            amounts = await store.read_amounts(
                account,
                [
                    ("emails", month, Aggregation.COUNT),
                    ("recommendation_views", month, Aggregation.SUM),
                ],
            )
            assert amounts == {
                ("emails", month): emails[account],
                ("recommendation_views", month): views[account],
            }, account
    finally:
        await store.close()


async def test_events_kafka_does_not_take_reach_the_callback_and_their_futures(
    kafka_bootstrap: str,
) -> None:
    failed: list[tuple[UsageEvent, DeliveryError]] = []
    async with UsageProducer.connect(
        kafka_bootstrap,
        source="sdk-fail",
        topic="metering.no-such-topic-sdk-test",  # the broker does not create topics
        request_timeout_ms=1500,
        on_delivery_failure=lambda event, error: failed.append((event, error)),
    ) as usage:
        futures = [usage.search_viewed("acme", idempotency_key=f"k{i}") for i in range(5)]
        await usage.flush()
        assert usage.buffered == 0
    assert sorted(e.id for e, _ in failed) == sorted(usage.build(
        "search.viewed", "acme", idempotency_key=f"k{i}").id for i in range(5))  # fmt: skip
    assert all(error.event_id == event.id for event, error in failed)
    for future in futures:
        with pytest.raises(DeliveryError, match="not delivered"):
            await future


async def test_a_full_buffer_raises_at_once_in_async_and_after_the_bound_in_sync(
    kafka_bootstrap: str,
) -> None:
    failures: list[str] = []
    async with UsageProducer.connect(
        kafka_bootstrap,
        source="sdk-full",
        topic="metering.no-such-topic-sdk-test",
        request_timeout_ms=3000,
        max_buffered=2,
        on_delivery_failure=lambda event, _: failures.append(event.id),
    ) as usage:
        usage.search_viewed("acme")
        usage.search_viewed("acme")
        with pytest.raises(BufferFull, match="2 events not yet acknowledged"):
            usage.search_viewed("acme")
    assert len(failures) == 2  # the third was never taken: the caller was told at once

    def sync_side() -> None:
        with SyncUsageProducer.connect(
            kafka_bootstrap,
            source="sdk-full",
            topic="metering.no-such-topic-sdk-test",
            request_timeout_ms=3000,
            max_buffered=1,
            max_block_ms=100,
            on_delivery_failure=lambda event, _: failures.append(event.id),
        ) as sync:
            sync.search_viewed("acme")
            with pytest.raises(BufferFull, match="after waiting 100 ms"):
                sync.search_viewed("acme")

    await asyncio.to_thread(sync_side)
    assert len(failures) == 3


async def test_an_unreachable_kafka_fails_at_connect_naming_the_address() -> None:
    with pytest.raises(DeliveryError, match=r"cannot connect to Kafka at 127\.0\.0\.1:1"):
        async with UsageProducer.connect("127.0.0.1:1", source="sdk", request_timeout_ms=2000):
            pass


async def test_send_many_waits_for_room_in_a_small_buffer(
    kafka_bootstrap: str, new_topic: str
) -> None:
    async with UsageProducer.connect(
        kafka_bootstrap, source="sdk-room", topic=new_topic, max_buffered=8
    ) as usage:
        receipts = await usage.send_many(usage.build("search.viewed", "acme") for _ in range(100))
    assert [r.offset for r in receipts] == list(range(100))


async def test_without_a_callback_each_failure_is_one_logged_error_line(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with UsageProducer.connect(
        kafka_bootstrap,
        source="sdk-log",
        topic="metering.no-such-topic-sdk-test",
        request_timeout_ms=1000,
    ) as usage:
        event = usage.build("search.viewed", "acme")
        usage.emit(event)
        await usage.flush()
    lines = [r for r in caplog.records if r.name == "metering.client"]
    assert [r.levelname for r in lines] == ["ERROR"]
    assert f"event {event.id} not delivered" in lines[0].getMessage()
    assert "account acme" in lines[0].getMessage()
