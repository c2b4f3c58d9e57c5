"""`metering closer --once`: the standalone closer publishes statements and tiers to Kafka.

The state is built through the processor's batch step on the events topic's partitions
(tests/integration/streams/test_period_close.py's `Stream`); the closer reads the configuration from
the accounts topic, the partitions from Kafka, and publishes through the outbox publisher.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace

import orjson
import pytest

from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import REPO, TopicFactory, env_of, make_settings, read_topic
from tests.integration.runtime.test_backfill import publish_config
from tests.integration.streams.test_period_close import Stream, directory_of, searches

pytestmark = pytest.mark.integration


async def test_closer_once_publishes_statements_and_tiers(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory
) -> None:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    settings: Settings = replace(
        base, statements_topic=await topic_factory(1), tiers_topic=await topic_factory(1)
    )
    await publish_config(settings)
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
    env = env_of(settings)
    env["METERING_STATEMENTS_TOPIC"] = settings.statements_topic
    env["METERING_TIERS_TOPIC"] = settings.tiers_topic
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metering.cli", "closer", "--once"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "closed 3 periods of 1 accounts: 3 statements, 3 tier events" in result.stdout

    statements = await read_topic(settings, settings.statements_topic, expect=3)
    assert sorted(
        (orjson.loads(r.value)["period"], orjson.loads(r.value)["total"]) for r in statements
    ) == [
        ("2026-08", 8),
        ("2026-09", 30),
        ("2026-10", 9),
    ]
    assert {r.key for r in statements} == {b"a1"}
    tiers = [
        orjson.loads(r.value) for r in await read_topic(settings, settings.tiers_topic, expect=3)
    ]
    # August alone: "up to 10" (provisional); with the September spike the average is 19:
    # "up to 25"; complete in October (average 15.67, still "up to 25").
    assert [(t["as_of"], t["up_to"], t["change"], t["complete"]) for t in tiers] == [
        ("2026-08", 10, "first", False),
        ("2026-09", 25, "up", False),
        ("2026-10", 25, "completed", True),
    ]
    assert [dict(r.headers)["id"].decode() for r in statements] == [
        orjson.loads(r.value)["id"] for r in statements
    ]
