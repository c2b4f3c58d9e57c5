"""admit_members.lua decides exactly as `metering.core.enforcement.decide_members` (the pure rule),
for random sequences of requests, limits, repeats and suppressions."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from metering.core.enforcement import (
    EnforcementMode,
    EnforcementPolicy,
    Reason,
    decide_batch,
    decide_members,
)
from metering.state.redis_store import RedisStateStore

pytestmark = pytest.mark.integration

CODES = {
    Reason.ALREADY_COUNTED: "c",
    Reason.SUPPRESSED_NOT_COUNTED: "s",
    Reason.WITHIN_LIMIT: "a",
    Reason.NO_LIMIT: "a",
    Reason.NEW_MEMBER_OVER_LIMIT: "r",
    Reason.ADVISORY_OVER_LIMIT: "o",
}


@pytest.mark.parametrize("mode", [EnforcementMode.NEW_MEMBERS, EnforcementMode.ADVISORY])
async def test_the_script_agrees_with_the_domain_rule(
    store: RedisStateStore, redis: aioredis.Redis, mode: EnforcementMode
) -> None:
    rng = random.Random(20261123)
    policy = EnforcementPolicy(mode)
    hard = mode is EnforcementMode.NEW_MEMBERS
    for case in range(60):
        period = f"p{case}"
        limit = rng.choice([None, 0, 1, 3, 8])
        suppressed = {f"m{i}" for i in range(12) if rng.random() < 0.15}
        for member in suppressed:
            await redis.hset("mtr:{acct}:sup", member, 50)  # before the period start (100)
        counted: set[str] = set()
        for _ in range(rng.randint(1, 5)):
            members = [f"m{rng.randrange(12)}" for _ in range(rng.randint(1, 6))]
            expected = decide_members(
                policy,
                used=len(counted),
                limit=limit,
                counted=counted,
                suppressed=suppressed,
                members=members,
            )
            size, codes = await store.admit_members(
                "acct",
                "m",
                period,
                members,
                limit=limit,
                hard=hard,
                period_start_ms=100,
                period_end_ms=200,
                expire_at_s=0,
            )
            assert codes == "".join(CODES[d.reason] for d in expected), (limit, members)
            if hard:
                counted |= {
                    d.item
                    for d in expected
                    if d.reason is Reason.WITHIN_LIMIT or d.reason is Reason.NO_LIMIT
                    if d.item
                }
            assert size == len(counted)
        await redis.delete("mtr:{acct}:sup")


async def test_the_gauge_script_admits_batches_as_the_domain_rule_and_holds_until_counted(
    store: RedisStateStore, redis: aioredis.Redis
) -> None:
    """admit_gauge.lua against `decide_batch` over random imports: the level is the gauge plus
    the places other imports hold; a hold ends when its member is counted or its time is up."""
    rng = random.Random(20261130)
    policy = EnforcementPolicy(EnforcementMode.LIMIT)
    for case in range(40):
        meter = f"g{case}"
        limit = rng.choice([None, 0, 3, 8])
        present: set[str] = set()
        holds: dict[str, int] = {}  # member -> hold end
        now = 4_000_000_000_000  # epoch ms (the holds key expires with its last hold)
        for _ in range(rng.randint(1, 6)):
            now += rng.choice([0, 50, 500])
            if rng.random() < 0.3 and holds:  # the processor counts some held contacts
                applied = rng.sample(sorted(holds), rng.randint(1, len(holds)))
                present |= set(applied)
                await redis.sadd(f"mtr:{{acct}}:g:{meter}", *applied)
            members = [f"m{rng.randrange(14)}" for _ in range(rng.randint(1, 6))]
            new = {m for m in members if m not in present}
            others = {m for m, end in holds.items() if end > now and m not in present} - new
            expected = decide_batch(
                policy, used=len(present) + len(others), limit=limit, new=len(new)
            )
            seen = await store.admit_gauge(
                "acct", meter, members, limit=limit, whole=True, now_ms=now, hold_until_ms=now + 300
            )
            assert (seen.size, seen.held, seen.new) == (len(present), len(others), len(new))
            assert seen.admitted is expected.allowed, (limit, members, present, holds)
            assert seen.present == tuple(m in present for m in members)
            holds = {m: end for m, end in holds.items() if end > now and m not in present}
            if seen.admitted:
                holds |= dict.fromkeys(new, now + 300)
            assert await redis.zcard(f"mtr:{{acct}}:h:{meter}") == len(holds)
