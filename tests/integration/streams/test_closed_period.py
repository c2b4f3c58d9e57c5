"""A closed period never changes: events dated in it go to the late topic, whatever partition
they come on (one that never carried an event included), after a processor restart and after a
rebalance. Real processors (`metering processor`, closer included), real Kafka and Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from metering.core.deltas import Aggregation
from metering.core.rfc3339 import parse_ms
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    ProcessorProcess,
    TopicFactory,
    event,
    make_settings,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

JULY = [
    ("emails", "2026-07", Aggregation.COUNT),
    ("active_contacts", "2026-07", Aggregation.DISTINCT),
]


def email(time: str, contact: str = "c1") -> dict[str, Any]:
    return event("shop", "email.sent", time_ms=parse_ms(time), contact=contact, kind="marketing")


async def send(settings: Settings, partition: int, docs: list[dict[str, Any]]) -> None:
    """Produce `docs` to one partition of the events topic (whatever their key hashes to)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for d in docs:
            await producer.send_and_wait(
                settings.events_topic,
                orjson.dumps(d),
                key=str(d["subject"]).encode(),
                partition=partition,
            )
    finally:
        await producer.stop()


async def group_members(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([settings.consumer_group])
    finally:
        await admin.close()
    group = described.groups[0]
    return len(group[5]) if group[2] == "Stable" else 0  # (error, id, state, type, proto, members)


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=4)
    s = replace(s, statements_topic=await topic_factory(1), tiers_topic=await topic_factory(1))
    await publish_config(s, [{"id": "shop", "plan": "it-plan"}, {"id": "other", "plan": "it-plan"}])
    return s


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(redis_url)
    yield s
    await s.close()


async def test_a_closed_month_never_changes_on_new_partitions_after_restart_and_rebalance(
    settings: Settings, store: RedisStateStore, tmp_path: Path
) -> None:
    processes: list[ProcessorProcess] = []

    def start(name: str) -> ProcessorProcess:
        proc = ProcessorProcess.start(settings, tmp_path / f"{name}.log")
        processes.append(proc)
        return proc

    async def late_records(n: int) -> list[Any]:
        found = await read_topic(settings, settings.late_topic, expect=n)
        assert len(found) == n, [(r.headers, r.value) for r in found]
        return found

    async def july_unchanged() -> None:
        assert (await store.rollups("shop", ["emails"]))["emails"] == {"2026-07": 3}
        assert await store.read_amounts("shop", JULY) == {
            ("emails", "2026-07"): 3,
            ("active_contacts", "2026-07"): 2,
        }
        assert await store.read_amounts("shop", [("emails", "2026-08", Aggregation.COUNT)]) == {
            ("emails", "2026-08"): 0
        }

    try:
        first = start("first")
        await first.ready()
        # July on partition 0, then an event of September: July (and August) close.
        await send(settings, 0, [email("2026-07-10T10:00:00Z", c) for c in ("c1", "c2", "c1")])
        await send(
            settings,
            0,
            [
                event(
                    "other",
                    "email.sent",
                    time_ms=parse_ms("2026-09-02T10:00:00Z"),
                    contact="x",
                    kind="marketing",
                )
            ],
        )

        async def july_closed() -> bool:
            return (await store.rollups("shop", ["emails"]))["emails"] == {"2026-07": 3}

        await wait_until(july_closed, what="July closed")

        # 1. Partition 1 never carried an event: a July event and an August one (a month
        #    without usage, closed too) are its first records.
        await send(
            settings, 1, [email("2026-07-20T10:00:00Z", "c9"), email("2026-08-20T10:00:00Z")]
        )
        found = await late_records(2)
        assert sorted((dict(r.headers)["meters"], dict(r.headers)["source"]) for r in found) == [
            (b"emails,active_contacts", f"{settings.events_topic}/1/0".encode()),
            (b"emails,active_contacts", f"{settings.events_topic}/1/1".encode()),
        ]
        await july_unchanged()

        # 2. After a restart, partition 2 (never carried an event either).
        assert first.terminate() == 0
        second = start("second")
        await second.ready()
        await send(settings, 2, [email("2026-07-21T10:00:00Z", "c8")])
        await late_records(3)
        await july_unchanged()

        # 3. After a rebalance: a second processor joins; partition 3 is new, partition 0
        #    (with its stored watermark) may have moved.
        third = start("third")
        await third.ready()

        async def two_members() -> bool:
            return await group_members(settings) == 2

        await wait_until(two_members, what="the group rebalanced to two processors")
        await send(settings, 3, [email("2026-07-22T10:00:00Z", "c7")])
        await send(settings, 0, [email("2026-07-23T10:00:00Z", "c6")])
        await late_records(5)
        await july_unchanged()

        # The statement of July was published once, with the total it still has.
        statements = await read_topic(settings, settings.statements_topic, expect=2)
        july = [
            orjson.loads(r.value)
            for r in statements
            if orjson.loads(r.value)["account"] == "shop"
            and orjson.loads(r.value)["meter"] == "emails"
        ]
        assert [(s["period"], s["total"]) for s in july] == [("2026-07", 3)]
        assert second.terminate() == 0
        assert third.terminate() == 0
    finally:
        for proc in processes:
            proc.stop_if_running()
