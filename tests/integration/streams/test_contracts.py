"""Real messages read from real topics validate against docs/schemas/ (docs/asyncapi.yaml).

A real processor (with its outbox publisher) meters usage events of every type from the SDK
and from a plain producer, dead-letters bad records (a key naming another account among them),
sends an old event to the late topic, and publishes threshold crossings; the closer publishes
statements and tier placements. Every record of the events, accounts, thresholds, dead-letter,
late, statements and tiers topics is then read back and validated against its schema, and the
threshold messages are checked for what v2 promises (before < used, event time of the
crossing batch, null period for gauges). Reminders are not produced in this branch (their
schema, docs/schemas/reminder.v1.json, is checked by tests/unit/core/test_event_schemas.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from metering.client import UsageProducer
from metering.core.event_schemas import file_name
from metering.core.events import EventType
from metering.core.periods import PeriodKind, period_of
from metering.core.rfc3339 import format_ms, parse_ms
from metering.core.thresholds import crossing_id
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    REPO,
    TopicFactory,
    caught_up,
    encoded,
    env_of,
    event,
    make_settings,
    now_ms,
    outboxes_drained,
    produce,
    publish_config,
    read_topic,
    wait_until,
)
from tests.integration.runtime.test_backfill import publish_config as publish_close_config
from tests.integration.streams.test_period_close import Stream, directory_of, searches
from tests.unit.core.test_event_schemas import sample, validator

pytestmark = pytest.mark.integration


@asynccontextmanager
async def processor(settings: Settings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=CollectorRegistry()))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def settled(settings: Settings, store: RedisStateStore) -> None:
    """Everything produced so far is applied and every crossing decided is published."""
    await wait_until(lambda: caught_up(settings, store), what="the processor to catch up")
    await wait_until(lambda: outboxes_drained(store), what="the outboxes to drain")


def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def test_messages_on_every_topic_validate_and_thresholds_keep_v2s_promises(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory
) -> None:
    settings = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    store = RedisStateStore.from_url(redis_url)
    t = now_ms()
    month = period_of(PeriodKind.CALENDAR_MONTH, t, "UTC").key
    crossing_time = t - 1000
    try:
        await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
        async with processor(settings):
            async with UsageProducer.connect(
                kafka_bootstrap, source="sdk", topic=settings.events_topic
            ) as usage:
                await usage.send_many([sample(event_type) for event_type in EventType])
            emails = [
                event("acme", "email.sent", contact="a", kind="marketing", time_ms=crossing_time)
                for _ in range(80)
            ]
            profiles = [
                event("acme", "contact.added", contact=f"p{i}", origin="api") for i in range(45)
            ]
            old = event(
                "acme", "email.sent", contact="z", kind="marketing", time_ms=t - 92 * 86_400_000
            )
            bad = [
                (b"acme", b"{nope"),
                (
                    b"acme",
                    orjson.dumps(event("other", "email.sent", contact="c", kind="marketing")),
                ),
                (b"acme", orjson.dumps(event("acme", "email.sent", contact="c", kind="fax"))),
            ]
            await produce(settings, [*encoded([*emails, *profiles, old]), *bad])
            await settled(settings, store)
        # A downgrade under the usage (profiles 45, new limit 10): a known contact added again
        # leaves the usage where it was and decides nothing (v1 published a crossing with
        # before == used here); the next new contact crosses with before 45 < used 46.
        await publish_config(
            settings, [{"id": "acme", "plan": "it-plan", "limits": {"profiles": 10}}]
        )
        async with processor(settings):
            await produce(
                settings, encoded([event("acme", "contact.added", contact="p0", origin="api")])
            )
            await settled(settings, store)
            after = event("acme", "contact.added", contact="p45", origin="api", time_ms=t)
            await produce(settings, encoded([after]))
            await settled(settings, store)
    finally:
        await store.close()

    usage_records = await read_topic(settings, settings.events_topic, expect=len(EventType) + 131)
    valid = [r for r in usage_records if (r.key, r.value) not in bad]
    assert len(valid) == len(EventType) + 128
    for record in valid:
        doc = orjson.loads(record.value)
        validator(file_name(EventType(doc["type"]))).validate(doc)
        validator("usage-event.json").validate(doc)
        assert record.key == doc["subject"].encode()

    config = await read_topic(settings, settings.accounts_topic, expect=4)
    kinds = [r.key.decode().split(":")[0] for r in config]
    assert sorted(kinds) == ["account", "account", "plan", "plan"]
    for record in config:
        kind = record.key.decode().split(":")[0]
        validator(f"config-{kind}.json").validate(orjson.loads(record.value))

    dead = await read_topic(settings, settings.dead_letter_topic, expect=len(bad))
    assert sorted(headers(r)["reason"] for r in dead) == [
        "invalid_value",
        "key_mismatch",
        "not_json",
    ]
    for record in dead:
        validator("dead-letter.json").validate(headers(record))

    late = await read_topic(settings, settings.late_topic, expect=1)
    assert [orjson.loads(r.value)["id"] for r in late] == [old["id"]]
    validator("late-event.json").validate(headers(late[0]))
    validator("usage-event.json").validate(orjson.loads(late[0].value))

    records = await read_topic(settings, settings.thresholds_topic, expect=4)
    bodies = {b["id"]: b for b in (orjson.loads(r.value) for r in records)}
    assert len(bodies) == len(records)
    for record in records:
        body = orjson.loads(record.value)
        validator("threshold.v2.json").validate(body)
        assert body["before"] < body["used"], body
        assert headers(record)["id"] == body["id"]
        assert record.key == b"acme"
        assert parse_ms(body["processed_at"]) >= parse_ms(body["event_time"]) - 300_000
    emails_at_risk = bodies[crossing_id("acme", "emails", month, "at_risk")]
    assert (emails_at_risk["period"], emails_at_risk["percent"], emails_at_risk["strict"]) == (
        month,
        80,
        False,
    )
    assert emails_at_risk["event_time"] == format_ms(crossing_time)
    first = bodies[crossing_id("acme", "profiles", "L50", "at_risk")]
    assert (first["period"], first["limit"]) == (None, 50)
    downgraded = [b for b in bodies.values() if b["limit"] == 10]
    assert downgraded, "no crossing under the new limit"
    for body in downgraded:
        assert (body["before"], body["used"], body["event_time"]) == (45, 46, format_ms(t))


async def test_statements_and_tiers_validate(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory
) -> None:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    settings: Settings = replace(
        base, statements_topic=await topic_factory(1), tiers_topic=await topic_factory(1)
    )
    await publish_close_config(settings)
    store = RedisStateStore.from_url(redis_url)
    try:
        stream = Stream(
            store,
            directory_of(("a1", "close-plan")),
            topic=settings.events_topic,
            group=settings.consumer_group,
        )
        for month, n in (("2026-08", 8), ("2026-09", 30), ("2026-10", 9)):
            await stream.feed(0, searches("a1", month, n))
        await stream.feed(0, searches("a1", "2026-11", 1, day=2))
    finally:
        await store.close()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metering.cli", "closer", "--once"],
        env={
            **env_of(settings),
            "METERING_STATEMENTS_TOPIC": settings.statements_topic,
            "METERING_TIERS_TOPIC": settings.tiers_topic,
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    statements = await read_topic(settings, settings.statements_topic, expect=3)
    tiers = await read_topic(settings, settings.tiers_topic, expect=3)
    assert (len(statements), len(tiers)) == (3, 3)
    for record in statements:
        validator("statement.v1.json").validate(orjson.loads(record.value))
    for record in tiers:
        validator("tier.v1.json").validate(orjson.loads(record.value))
