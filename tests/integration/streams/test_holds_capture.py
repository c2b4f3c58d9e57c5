"""Capture of admission holds by the processor, on real Kafka and Redis: never counted twice.

An admission holds units (`RedisStateStore.hold`, what the API's admission does); the producer
puts the hold id on the usage events (`holdid`); the processor replaces held units by counted
ones in the step that counts them. These tests run the real processor (`metering processor`)
and check, after a SIGKILL mid-stream and after a Redis loss and rebuild from the log, that
every event counts exactly once and the holds end at zero.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from metering.core.account_codec import account_from_json
from metering.core.deltas import Aggregation
from metering.core.holds import HoldKind, HoldRequest
from metering.core.periods import PeriodKind, period_of
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from tests.integration.harness import (
    ProcessorProcess,
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    now_ms,
    produce,
    wait_until,
)
from tests.reliability.infra import PrivateRedis

pytestmark = pytest.mark.integration

PLAN = Path(__file__).parents[1] / "plans" / "holds-plan.toml"
ACCOUNT = "holder"
TOP_UP = 100


async def _publish_config(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        await writer.put_plan("holds-plan", PLAN.read_text(), PLAN.name)
        await writer.put_account(account_from_json({"id": ACCOUNT, "plan": "holds-plan"}))
    finally:
        await producer.stop()


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text()[-chars:]


def _month() -> str:
    return period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key


async def _levels(store: RedisStateStore) -> tuple[int, int, int, int]:
    """(e-mails used, e-mails held, credits left, credits held)."""
    month = _month()
    amounts = await store.read_amounts(
        ACCOUNT, [("emails", month, Aggregation.COUNT), ("sms_credits", "", Aggregation.BALANCE)]
    )
    held = await store.held(ACCOUNT, [f"emails:{month}", "sms_credits:"], now_ms=now_ms())
    return (
        amounts[("emails", month)],
        held[f"emails:{month}"],
        amounts[("sms_credits", "")],
        held["sms_credits:"],
    )


async def _hold(store: RedisStateStore, request: HoldRequest, items: int, ttl_ms: int) -> str:
    hold = uuid.uuid4().hex
    now = now_ms()
    outcome = await store.hold(ACCOUNT, hold, [request], items, now_ms=now, expires_ms=now + ttl_ms)
    assert outcome.admitted == items
    return hold


def _events(hold: str, kind: str, n: int) -> list[dict[str, Any]]:
    docs = []
    for _ in range(n):
        if kind == "sms":
            doc = event(ACCOUNT, "sms.sent", contact="c-1")
        else:
            doc = event(ACCOUNT, "email.sent", contact="c-1", kind="marketing")
        doc["holdid"] = hold
        docs.append(doc)
    return docs


async def _scenario(settings: Settings, store: RedisStateStore, log: Path) -> list[dict[str, Any]]:
    """Top up, hold 60 credits and 40 e-mails, send their events across two SIGKILLs; an
    expired hold's late events count as ordinary usage. Returns every event produced."""
    produced = [event(ACCOUNT, "sms.credits_added", quantity=TOP_UP)]
    await produce(settings, encoded(produced))
    proc = ProcessorProcess.start(settings, log, batch_max_records=7)
    try:
        await proc.ready()
        await wait_until(lambda: caught_up(settings, store), what="top-up counted")
        sms = HoldRequest("sms_credits", "", HoldKind.BALANCE, None, 1)
        mail = HoldRequest("emails", _month(), HoldKind.LIMIT, 1000, 1)
        sms_hold = await _hold(store, sms, 60, 600_000)
        mail_hold = await _hold(store, mail, 40, 600_000)
        assert await _levels(store) == (0, 40, TOP_UP, 60)
        late_hold = await _hold(store, mail, 5, 1)  # expires at once: its events count as usage
        await asyncio.sleep(0.01)
        assert await _levels(store) == (0, 40, TOP_UP, 60)
        batches = [
            _events(sms_hold, "sms", 30) + _events(mail_hold, "mail", 20),
            _events(sms_hold, "sms", 30) + _events(mail_hold, "mail", 20),
            _events(late_hold, "mail", 5),
        ]
        for batch in batches:
            await produce(settings, encoded(batch))
            produced += batch
            await asyncio.sleep(0.3)
            proc.kill()  # SIGKILL mid-stream: the next processor replays from its positions
            proc = ProcessorProcess.start(settings, log, batch_max_records=7)
        await produce(settings, encoded(batches[0]))  # a producer retrying a whole batch
        await wait_until(lambda: caught_up(settings, store), timeout_s=120, what="catch-up")
        assert proc.terminate() == 0, _tail(log)
    finally:
        proc.stop_if_running()
    return produced


async def test_captures_count_once_across_sigkills(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=1)
    await _publish_config(settings)
    store = RedisStateStore.from_url(redis_url)
    try:
        await _scenario(settings, store, tmp_path / "processor.log")
        # 60 SMS and 40 + 5 e-mails, each once; nothing held any more.
        assert await _levels(store) == (45, 0, TOP_UP - 60, 0)
    finally:
        await store.close()


async def test_a_rebuild_after_a_redis_loss_counts_captured_events_once(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    """FLUSHALL (a private Redis) and a restart: the holds are gone with the rest of Redis and
    the replayed events just count, each once."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        settings = await make_settings(kafka_bootstrap, server.url, topic_factory, partitions=1)
        await _publish_config(settings)
        store = RedisStateStore.from_url(server.url)
        log = tmp_path / "processor.log"
        try:
            await _scenario(settings, store, log)
            assert await _levels(store) == (45, 0, TOP_UP - 60, 0)
            server.flushall()
            proc = ProcessorProcess.start(settings, log)
            try:
                await wait_until(lambda: caught_up(settings, store), timeout_s=120, what="rebuild")
                assert proc.terminate() == 0, _tail(log)
            finally:
                proc.stop_if_running()
            assert "rebuilding by replaying the partition from its beginning" in _tail(log, 100_000)
            assert await _levels(store) == (45, 0, TOP_UP - 60, 0)
        finally:
            await store.close()
    finally:
        server.close()
