"""The store's contract, run over every store behind the same Protocol: the Redis store and the
in-memory fakes of tests/fakes.py (Quix Streams' SUPPORTED_STORES parametrisation).

Positions and markers (`PositionStore`) and outboxes (`OutboxStore`); the atomic apply step is
the Lua script's own and is tested against Redis only (test_redis_store.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from metering.core.ports import OutboxStore, PositionStore
from metering.state import keys
from metering.state.redis_store import RedisStateStore
from tests.fakes import MemoryOutboxes, MemoryPositions

pytestmark = pytest.mark.integration

SUPPORTED_STORES = ["redis", "memory"]
TOPIC = "usage"


@dataclass
class Outboxes:
    store: OutboxStore
    add: Callable[[str, dict[str, str]], Awaitable[object]]
    """Put an entry into an account's outbox (the apply step's part)."""


@pytest.fixture(params=SUPPORTED_STORES)
async def positions(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[PositionStore]:
    if request.param == "memory":
        yield MemoryPositions()
        return
    store = RedisStateStore.from_url(redis_url)
    yield store
    await store.close()


@pytest.fixture(params=SUPPORTED_STORES)
async def outboxes(
    request: pytest.FixtureRequest, redis_url: str, redis: aioredis.Redis
) -> AsyncIterator[Outboxes]:
    """The Redis variant needs `redis_url`/`redis`; the memory one gets them too (unused), since
    an async fixture cannot ask for them by name at run time."""
    if request.param == "memory":
        fake = MemoryOutboxes()

        async def add_to_fake(account: str, fields: dict[str, str]) -> None:
            fake.add(account, fields)

        yield Outboxes(fake, add_to_fake)
        return
    store = RedisStateStore.from_url(redis_url)

    async def add(account: str, fields: dict[str, str]) -> object:
        entry: dict[Any, Any] = dict(fields)  # redis-py's field typing is invariant
        return await redis.xadd(keys.outbox_key(account), entry)

    yield Outboxes(store, add)
    await store.close()


async def test_positions_never_move_backwards(positions: PositionStore) -> None:
    await positions.advance_positions("g", TOPIC, {0: (10, 100), 1: (5, 50)}, applied_ms=1)
    await positions.advance_positions("g", TOPIC, {0: (7, 70), 1: (6, 60)}, applied_ms=1)
    assert await positions.positions("g", TOPIC, [0, 1, 2]) == {0: (10, 100), 1: (6, 60)}
    assert await positions.positions("other-group", TOPIC, [0]) == {}


async def test_marker_is_claimed_once_and_read_with_positions(positions: PositionStore) -> None:
    assert await positions.store_marker() is None
    assert await positions.marker_and_positions("g", TOPIC, [0]) == (None, {})
    assert await positions.claim_store_marker("first") == "first"
    assert await positions.claim_store_marker("second") == "first"
    await positions.advance_positions("g", TOPIC, {0: (3, 30)}, applied_ms=1)
    assert await positions.marker_and_positions("g", TOPIC, [0, 1]) == ("first", {0: 3})


async def test_replay_targets_are_kept_until_finished(positions: PositionStore) -> None:
    await positions.mark_rebuilding(TOPIC, 0, 100)
    await positions.mark_rebuilding(TOPIC, 2, 50)
    assert await positions.rebuilding_targets(TOPIC, [0, 1, 2]) == {0: 100, 2: 50}
    await positions.finish_rebuilding(TOPIC, [0])
    assert await positions.rebuilding_targets(TOPIC, [0, 1, 2]) == {2: 50}
    assert await positions.rebuilding_targets(TOPIC, []) == {}


async def test_outbox_entries_are_read_oldest_first_and_acknowledged(outboxes: Outboxes) -> None:
    store = outboxes.store
    for n in range(3):
        await outboxes.add("a1", {"id": f"c{n}", "account": "a1"})
    await store.index_outboxes(["a1"])
    assert await store.indexed_outboxes() == ["a1"]
    assert await store.sweep_outboxes() == ["a1"]
    entries = await store.read_outbox("a1", count=2)
    assert [e.fields["id"] for e in entries] == ["c0", "c1"]
    assert await store.ack_outbox("a1", [e.entry_id for e in entries]) == 1
    rest = await store.read_outbox("a1")
    assert [e.fields["id"] for e in rest] == ["c2"]
    assert await store.indexed_outboxes() == ["a1"]
    assert await store.ack_outbox("a1", [rest[0].entry_id]) == 0
    assert await store.indexed_outboxes() == []
    assert await store.sweep_outboxes() == []
    assert await store.read_outbox("a1") == []


async def test_a_sweep_finds_outboxes_whose_index_note_was_lost(outboxes: Outboxes) -> None:
    await outboxes.add("b2", {"id": "x"})
    assert await outboxes.store.indexed_outboxes() == []
    assert await outboxes.store.sweep_outboxes() == ["b2"]


async def test_publisher_shard_claims_are_exclusive_until_released(outboxes: Outboxes) -> None:
    store = outboxes.store
    assert await store.claim_publisher_shard(0, "p1", 10_000)
    assert not await store.claim_publisher_shard(0, "p2", 10_000)
    assert await store.claim_publisher_shard(0, "p1", 10_000)  # the holder keeps it
    assert await store.claim_publisher_shard(1, "p2", 10_000)  # shards are independent
    await store.release_publisher_shard(0, "p2")  # not the holder: nothing happens
    assert not await store.claim_publisher_shard(0, "p2", 10_000)
    await store.release_publisher_shard(0, "p1")
    assert await store.claim_publisher_shard(0, "p2", 10_000)
