"""A quiet partition still gets its statements (issue 16): the closer closes by the wall clock
once nothing arrived on the partition for longer than the grace and the processors applied
everything on it; an event for a period closed that way goes to the late topic, uncounted.

A real processor (subprocess) applies the events from Kafka; the closer process's parts run
in-process with a clock the test moves (`metering.runtime.closer.closer_app`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from metering.core.rfc3339 import parse_ms
from metering.runtime.closer import closer_app
from metering.state import keys
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    ProcessorProcess,
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    now_ms,
    produce,
    read_topic,
    wait_until,
)
from tests.integration.runtime.test_backfill import publish_config

pytestmark = pytest.mark.integration

ACCOUNT = "a1"
"""On close-plan (tests/integration/plans/close-plan.toml): searches per calendar month, UTC."""


def search(day: str) -> dict[str, object]:
    return event(ACCOUNT, "search.viewed", time_ms=parse_ms(f"{day}T10:00:00Z"), surface="page")


async def test_a_quiet_partition_closes_by_the_wall_clock_plus_grace(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    settings = replace(
        base, statements_topic=await topic_factory(1), tiers_topic=await topic_factory(1)
    )
    grace_ms = settings.grace_s * 1000
    await publish_config(settings)
    store = RedisStateStore.from_url(redis_url)
    processor = ProcessorProcess.start(settings, tmp_path / "processor.log")
    try:
        await processor.ready()
        # A small shop's quiet month: three searches in October, then nothing at all.
        await produce(settings, encoded([search("2026-10-05"), search("2026-10-06")]))
        await produce(settings, encoded([search("2026-10-07")]))
        await wait_until(lambda: caught_up(settings, store), what="processor caught up")

        now = [now_ms()]
        async with closer_app(settings, lambda: now[0]) as app:
            # The stored watermark (7 October) has not passed October's end: nothing is due,
            # and this closer has not yet seen the partition quiet for longer than the grace.
            first = await app.closer.close_pass()
            assert (first.frozen, first.statements) == (0, 0)
            now[0] += grace_ms  # exactly the grace: not longer
            assert (await app.closer.close_pass()).frozen == 0
            now[0] += 1
            closed = await app.closer.close_pass()
            assert (closed.frozen, closed.statements) == (1, 1)

        statements = await read_topic(settings, settings.statements_topic, expect=1)
        body = orjson.loads(statements[0].value)
        assert (body["account"], body["meter"], body["period"], body["total"]) == (
            ACCOUNT,
            "searches",
            "2026-10",
            3,
        )
        assert int(await store._client.get(keys.closed_through_key(ACCOUNT))) == now[0] - grace_ms

        # A late event for October after that close: refused by the store, on the late topic,
        # not counted; a search of this month still counts.
        late, current = search("2026-10-20"), event(ACCOUNT, "search.viewed", surface="page")
        await produce(settings, encoded([late, current]))
        await wait_until(lambda: caught_up(settings, store), what="late event handled")
        refused = await read_topic(settings, settings.late_topic, expect=1)
        assert [orjson.loads(r.value)["id"] for r in refused] == [late["id"]]
        october = keys.counter_key(ACCOUNT, "searches", "2026-10")
        assert int(await store._client.get(october)) == 3
        open_periods = await store.open_periods([ACCOUNT])
        assert "searches:2026-10" not in open_periods[ACCOUNT]
        assert any(name.startswith("searches:") for name in open_periods[ACCOUNT])
    finally:
        processor.stop_if_running()
        await store.close()
