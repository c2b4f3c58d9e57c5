"""The outbox publisher on the real Kafka and Redis of the test stack: routing, and each
message once for `read_committed` readers across crashes, rebuilds and zombies (ADR 0008)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from metering.core.errors import MeteringError, StateStoreUnavailable
from metering.settings import Settings
from metering.state import keys
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from tests.integration.harness import TopicFactory, make_settings, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    return replace(
        base,
        statements_topic=await topic_factory(1),
        tiers_topic=await topic_factory(1),
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(settings.redis_url)
    yield s
    await s.close()


def new_publisher(settings: Settings, store: RedisStateStore) -> OutboxPublisher:
    return OutboxPublisher.from_settings(settings, store, client_id="test-publisher")


def crossing_entry(account: str, crossing: str) -> dict[Any, Any]:
    """A crossing's outbox fields, as lua/apply.lua writes them."""
    entry = {"id": crossing, "account": account, "meter": "emails", "period": "2026-07"}
    entry |= {"threshold": "at_risk", "num": 4, "den": 5, "strict": 0, "limit": 10}
    return entry | {"used": 8, "before": 7, "at_ms": 1, "event_ms": 1}


async def add_crossings(redis: aioredis.Redis, account: str, ids: Sequence[str]) -> None:
    """Entries as the apply step writes them (lua/apply.lua), or as a rebuild writes them again."""
    for crossing in ids:
        await redis.xadd(keys.outbox_key(account), crossing_entry(account, crossing))


async def ids_on(settings: Settings, topic: str, *, expect: int) -> Counter[str]:
    """How often each id is on `topic` for a `read_committed` reader."""
    records = await read_topic(settings, topic, expect=expect, timeout_s=20)
    return Counter(orjson.loads(r.value)["id"] for r in records)


class AckFails(RedisStateStore):
    """A store whose first acknowledgement fails: a publisher crashing after its commit."""

    failed = False

    async def ack_outbox(self, account: str, entry_ids: Sequence[str]) -> int:
        if entry_ids and not self.failed:
            self.failed = True
            raise StateStoreUnavailable("ack lost (test)")
        return await super().ack_outbox(account, entry_ids)


async def test_the_publisher_routes_statements_and_tiers_to_their_topics(
    settings: Settings, store: RedisStateStore, redis: aioredis.Redis
) -> None:
    key = keys.outbox_key("a1")
    await redis.xadd(key, crossing_entry("a1", "x1"))
    await redis.xadd(key, {"id": "s1", "kind": "statement", "body": '{"id":"s1"}'})
    await redis.xadd(key, {"id": "t1", "kind": "tier", "body": '{"id":"t1"}'})
    await redis.xadd(key, {"id": "n1", "kind": "from-the-future", "body": "{}"})
    await redis.xadd(key, {"id": "s2", "kind": "statement", "body": '{"id":"s2"}'})
    counted: list[tuple[str, int]] = []
    publisher = OutboxPublisher.from_settings(
        settings,
        store,
        client_id="test-publisher",
        on_published=lambda n: counted.append(("crossing", n)),
        on_kind_published=lambda kind, n: counted.append((kind, n)),
    )
    try:
        sent = await publisher.publish_accounts(["a1"])
    finally:
        await publisher.close()

    assert sent == 3
    assert sorted(counted) == [("crossing", 1), ("statement", 1), ("tier", 1)]
    (crossing,) = await read_topic(settings, settings.thresholds_topic, expect=1)
    assert orjson.loads(crossing.value)["type"] == "threshold.crossed"
    assert crossing.key == b"a1"
    assert dict(crossing.headers)["id"] == b"x1"
    (statement,) = await read_topic(settings, settings.statements_topic, expect=1)
    assert (statement.value, dict(statement.headers)["id"]) == (b'{"id":"s1"}', b"s1")
    (tier,) = await read_topic(settings, settings.tiers_topic, expect=1)
    assert (tier.value, dict(tier.headers)["id"]) == (b'{"id":"t1"}', b"t1")
    # An entry of a kind this publisher does not know waits (with what follows) for one that does.
    left = await store.read_outbox("a1")
    assert [e.fields["id"] for e in left] == ["n1", "s2"]
    # What was published is on the progress topic, in the same transactions.
    progress = await read_topic(settings, settings.publisher_progress_topic, expect=3)
    assert sorted(r.key for r in progress) == [b"crossing:x1", b"statement:s1", b"tier:t1"]


async def test_a_crash_between_commit_and_acknowledgement_publishes_nothing_twice(
    settings: Settings, store: RedisStateStore, redis: aioredis.Redis
) -> None:
    await add_crossings(redis, "a1", [f"a1:emails:2026-07:{n}/5" for n in range(1, 6)])
    await add_crossings(redis, "a2", ["a2:emails:2026-07:4/5"])
    crashing = AckFails.from_url(settings.redis_url)
    first = new_publisher(settings, crashing)
    try:
        with pytest.raises(MeteringError, match="ack lost"):
            await first.publish_accounts(["a1", "a2"])
    finally:
        await first.close()
        await crashing.close()
    assert len(await store.read_outbox("a1")) == 5  # committed to Kafka, still in Redis

    second = new_publisher(settings, store)
    try:
        assert await second.publish_accounts(["a1", "a2"]) == 0
        assert second.skipped_total == 6
    finally:
        await second.close()

    assert await store.read_outbox("a1") == []
    assert await store.read_outbox("a2") == []
    seen = await ids_on(settings, settings.thresholds_topic, expect=6)
    assert len(seen) == 6
    assert set(seen.values()) == {1}


async def test_a_rebuild_that_decides_the_same_crossings_again_publishes_only_new_ones(
    settings: Settings, store: RedisStateStore, redis: aioredis.Redis
) -> None:
    before = [f"a1:emails:2026-07:{n}/5" for n in range(1, 4)]
    await add_crossings(redis, "a1", before)
    publisher = new_publisher(settings, store)
    try:
        assert await publisher.publish_accounts(["a1"]) == 3
    finally:
        await publisher.close()

    # Redis lost and rebuilt from the log: the same crossings again, with one new one.
    await add_crossings(redis, "a1", [*before, "a1:emails:2026-07:4/5"])
    rebuilt = new_publisher(settings, store)
    try:
        assert await rebuilt.publish_accounts(["a1"]) == 1
        assert rebuilt.skipped_total == 3
    finally:
        await rebuilt.close()

    seen = await ids_on(settings, settings.thresholds_topic, expect=4)
    assert seen == Counter(dict.fromkeys([*before, "a1:emails:2026-07:4/5"], 1))


async def test_a_publisher_whose_shard_was_taken_over_cannot_publish_any_more(
    settings: Settings, store: RedisStateStore, redis: aioredis.Redis
) -> None:
    zombie = new_publisher(settings, store)
    successor = new_publisher(settings, store)
    try:
        await add_crossings(redis, "a1", ["a1:emails:2026-07:1/5"])
        assert await zombie.publish_accounts(["a1"]) == 1
        # The zombie stalls past its claim: the claim expires, the successor takes the shard
        # (its producer, with the same transactional id, fences the zombie's).
        await redis.delete(keys.publisher_shard_key(0))
        await add_crossings(redis, "a1", ["a1:emails:2026-07:2/5"])
        assert await successor.publish_accounts(["a1"]) == 1
        await redis.delete(keys.publisher_shard_key(0))
        # The zombie wakes, claims the shard again and tries to send with its old producer.
        await add_crossings(redis, "a1", ["a1:emails:2026-07:3/5"])
        with pytest.raises(MeteringError):
            await zombie.publish_accounts(["a1"])
        # Given up, it starts over (fencing the successor) and knows what was published.
        assert await zombie.publish_accounts(["a1"]) == 1
    finally:
        await zombie.close()
        await successor.close()

    seen = await ids_on(settings, settings.thresholds_topic, expect=3)
    assert seen == Counter({f"a1:emails:2026-07:{n}/5": 1 for n in (1, 2, 3)})


async def test_accounts_are_spread_over_shards_and_each_is_published_by_its_holder(
    settings: Settings, store: RedisStateStore, redis: aioredis.Redis, topic_factory: TopicFactory
) -> None:
    sharded = replace(settings, publisher_shards=3, publisher_progress_topic=await topic_factory(3))
    accounts = [f"s{i}" for i in range(12)]
    for account in accounts:
        await add_crossings(redis, account, [f"{account}:emails:2026-07:4/5"])
    one, other = new_publisher(sharded, store), new_publisher(sharded, store)
    try:
        await redis.set(keys.publisher_shard_key(1), "someone-else")
        first = await one.publish_accounts(accounts)
        assert await other.publish_accounts(accounts) == 0  # shards 0 and 2 are held by `one`
        await redis.delete(keys.publisher_shard_key(1))
        second = await other.publish_accounts(accounts)
    finally:
        await one.close()
        await other.close()

    assert first + second == 12
    assert first > 0
    assert second > 0
    seen = await ids_on(settings, settings.thresholds_topic, expect=12)
    assert len(seen) == 12
    assert set(seen.values()) == {1}
    progress = await read_topic(sharded, sharded.publisher_progress_topic, expect=12)
    assert {r.partition for r in progress} == {0, 1, 2}


async def test_a_missing_progress_topic_is_named(
    settings: Settings, store: RedisStateStore, redis: aioredis.Redis
) -> None:
    await add_crossings(redis, "a1", ["a1:emails:2026-07:1/5"])
    missing = replace(settings, publisher_progress_topic="test.no-such-progress-topic")
    publisher = new_publisher(missing, store)
    try:
        with pytest.raises(MeteringError, match=r"test\.no-such-progress-topic"):
            await publisher.publish_accounts(["a1"])
    finally:
        await publisher.close()
    assert len(await store.read_outbox("a1")) == 1
