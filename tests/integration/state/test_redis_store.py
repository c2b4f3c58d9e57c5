"""The Redis state store against a real Redis: the atomic apply step and its guarantees."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from metering.core.deltas import Aggregation, Contribution, fold
from metering.core.ports import ApplyOutcome, ApplyStatus, ApplyStep, MeterRule, ThresholdRule
from metering.state.redis_store import RedisStateStore

pytestmark = pytest.mark.integration

TOPIC = "usage"
AT_RISK = ThresholdRule("at_risk", 4, 5, "id-at-risk")
EXCEEDED = ThresholdRule("exceeded", 1, 1, "id-exceeded", strict=True)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(redis_url)
    yield s
    await s.close()


def sends(account: str, n: int, *, first_offset: int, prefix: str = "e") -> ApplyStep:
    delta = fold(
        account,
        [Contribution("emails", "2026-11", Aggregation.COUNT, amount=1) for _ in range(n)],
    )
    for i in range(n):
        delta.note_event(f"{prefix}{first_offset + i}", first_offset + i)
    rules = {("emails", "2026-11"): MeterRule(limit=10, thresholds=(AT_RISK, EXCEEDED))}
    return ApplyStep(delta, TOPIC, 0, rules)


async def emails(store: RedisStateStore, account: str) -> int:
    amounts = await store.read_amounts(account, [("emails", "2026-11", Aggregation.COUNT)])
    return amounts[("emails", "2026-11")]


async def apply_one(store: RedisStateStore, step: ApplyStep, now_ms: int) -> ApplyOutcome:
    [outcome] = await store.apply([step], dedup_window_s=60, now_ms=now_ms)
    return outcome


async def test_apply_counts_and_reports_each_crossing_once(store: RedisStateStore) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    first = await apply_one(store, sends("a1", 7, first_offset=0), now + 1)
    assert first.status is ApplyStatus.APPLIED
    assert first.crossings == ()
    second = await apply_one(store, sends("a1", 1, first_offset=7), now + 2)
    assert second.crossings == ("id-at-risk",)
    reaching = await apply_one(store, sends("a1", 2, first_offset=8), now + 3)
    assert reaching.crossings == ()  # 10 of 10 reaches the limit; "exceeded" is strict
    third = await apply_one(store, sends("a1", 3, first_offset=10), now + 4)
    assert third.crossings == ("id-exceeded",)
    assert third.outbox_length == 2
    assert await emails(store, "a1") == 13


async def test_replayed_step_is_a_no_op(store: RedisStateStore) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    step = sends("a2", 5, first_offset=10)
    await store.apply([step], dedup_window_s=60, now_ms=now + 1)
    [again] = await store.apply([step], dedup_window_s=60, now_ms=now + 2)
    assert again.status is ApplyStatus.ALREADY_APPLIED
    assert await emails(store, "a2") == 5


async def test_step_overlapping_the_fence_returns_it_and_writes_nothing(
    store: RedisStateStore,
) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    await store.apply([sends("a3", 5, first_offset=0)], dedup_window_s=60, now_ms=now + 1)
    [partial] = await store.apply(
        [sends("a3", 6, first_offset=2)], dedup_window_s=60, now_ms=now + 2
    )
    assert partial.status is ApplyStatus.PARTIAL
    assert partial.fence == 4
    assert await emails(store, "a3") == 5


async def test_remembered_event_id_is_reported_and_nothing_written(store: RedisStateStore) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    await store.apply([sends("a4", 3, first_offset=0)], dedup_window_s=60, now_ms=now + 1)
    # The producer retried event e1 and it landed again at offset 3.
    retry = sends("a4", 1, first_offset=3)
    retry.delta.event_ids[0] = "e1"
    [dup] = await store.apply([retry], dedup_window_s=60, now_ms=now + 2)
    assert dup.status is ApplyStatus.DUPLICATES
    assert dup.duplicates == ("e1",)
    assert await emails(store, "a4") == 3


async def test_distinct_members_skip_contacts_suppressed_before_the_period(
    store: RedisStateStore,
) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    contributions = [
        Contribution("active", "2026-11", Aggregation.DISTINCT, member=m, period_start_ms=1_000)
        for m in ("c1", "c2", "c1", "c3")
    ]
    delta = fold("a5", contributions)
    delta.suppress("c2", 500)  # opted out before the month: never counts
    delta.suppress("c3", 1_500)  # hard bounce during the month: it was active, it counts
    delta.note_event("x1", 0)
    rules = {("active", "2026-11"): MeterRule(limit=3)}
    await store.apply([ApplyStep(delta, TOPIC, 0, rules)], dedup_window_s=60, now_ms=now)
    assert await store.members("a5", "active", "2026-11") == {"c1", "c3"}


async def test_members_reserved_by_admission_cross_with_their_first_event(
    store: RedisStateStore,
) -> None:
    """Act-On: admission reserves new members in the distinct set before their e-mails are
    sent, so the usage rises at admission; the apply step that counts them finds them there
    and must still decide the crossing (once), with `before` equal to `used`."""
    now = time.time_ns() // 1_000_000
    members = [f"c{i}" for i in range(1, 11)]
    used, codes = await store.admit_members(
        "a7", "active", "2026-11", members, limit=10, hard=True,
        period_start_ms=0, period_end_ms=now + 86_400_000, expire_at_s=0,
    )  # fmt: skip
    assert (used, codes) == (10, "a" * 10)
    reached = ThresholdRule("reached", 1, 1, "id-reached")
    rules = {("active", "2026-11"): MeterRule(limit=10, thresholds=(AT_RISK, reached))}

    def sent(names: list[str], first_offset: int) -> ApplyStep:
        delta = fold("a7", [Contribution("active", "2026-11", Aggregation.DISTINCT, member=m)
                            for m in names])  # fmt: skip
        for i, _ in enumerate(names):
            delta.note_event(f"m{first_offset + i}", first_offset + i)
        return ApplyStep(delta, TOPIC, 0, rules)

    first = await apply_one(store, sent(members[:3], 0), now + 1)
    assert set(first.crossings) == {"id-at-risk", "id-reached"}
    again = await apply_one(store, sent(members[3:], 3), now + 2)
    assert again.crossings == ()  # once per threshold
    entries = await store.read_outbox("a7", 10)
    found = sorted((e.fields["threshold"], e.fields["before"], e.fields["used"]) for e in entries)
    assert found == [("at_risk", "10", "10"), ("reached", "10", "10")]


async def test_gauge_counts_added_minus_deleted_members(store: RedisStateStore) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    ops = [("p1", True), ("p2", True), ("p3", True), ("p2", False), ("p3", False), ("p3", True)]
    delta = fold(
        "a6",
        [Contribution("profiles", "", Aggregation.GAUGE, member=m, present=p) for m, p in ops],
    )
    delta.note_event("g1", 0)
    await store.apply([ApplyStep(delta, TOPIC, 0, {})], dedup_window_s=60, now_ms=now + 1)
    amounts = await store.read_amounts("a6", [("profiles", "", Aggregation.GAUGE)])
    assert amounts[("profiles", "")] == 2


async def test_positions_never_move_backwards(store: RedisStateStore) -> None:
    await store.advance_positions("g", TOPIC, {0: (10, 100), 1: (5, 50)}, applied_ms=1)
    await store.advance_positions("g", TOPIC, {0: (7, 70), 1: (6, 60)}, applied_ms=1)
    assert await store.positions("g", TOPIC, [0, 1, 2]) == {0: (10, 100), 1: (6, 60)}


async def test_outbox_entries_are_read_and_acknowledged(store: RedisStateStore) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    await store.apply([sends("a7", 11, first_offset=0)], dedup_window_s=60, now_ms=now + 1)
    assert await store.sweep_outboxes() == ["a7"]
    entries = await store.read_outbox("a7")
    assert [e.fields["threshold"] for e in entries] == ["at_risk", "exceeded"]
    assert entries[1].fields["used"] == "11"
    assert entries[1].fields["id"] == "id-exceeded"
    remaining = await store.ack_outbox("a7", [e.entry_id for e in entries])
    assert remaining == 0
    assert await store.sweep_outboxes() == []


async def test_event_ids_are_forgotten_after_the_dedup_window(store: RedisStateStore) -> None:
    now = time.time_ns() // 1_000_000  # dedup buckets expire by the server clock
    window_s = 60
    await store.apply([sends("a8", 1, first_offset=0)], dedup_window_s=window_s, now_ms=now)
    again = sends("a8", 1, first_offset=1)
    again.delta.event_ids[0] = "e0"
    [within] = await store.apply([again], dedup_window_s=window_s, now_ms=now + 59_000)
    assert within.status is ApplyStatus.DUPLICATES
    later = now + 2 * window_s * 1000
    [after] = await store.apply([again], dedup_window_s=window_s, now_ms=later)
    assert after.status is ApplyStatus.APPLIED
    assert await emails(store, "a8") == 2


async def test_keys_get_their_expiry_when_created_and_keep_it(
    store: RedisStateStore, redis_url: str
) -> None:
    """apply.lua sets a key's expiry only in the step that creates it (one call fewer per
    meter and step); later steps must not lose it."""
    expire_at = int(time.time()) + 86_400
    now = time.time_ns() // 1_000_000
    rules = {
        ("emails", "2026-11"): MeterRule(limit=None, expire_at_s=expire_at, period_end_ms=1),
        ("active", "2026-11"): MeterRule(limit=None, expire_at_s=expire_at, period_end_ms=1),
    }
    for offset in range(3):
        delta = fold(
            "ttl1",
            [
                Contribution("emails", "2026-11", Aggregation.COUNT, amount=1),
                Contribution("active", "2026-11", Aggregation.DISTINCT, member=f"c{offset}"),
            ],
        )
        delta.note_event(f"t{offset}", offset)
        outcome = await apply_one(store, ApplyStep(delta, TOPIC, 0, rules), now + offset)
        assert outcome.status is ApplyStatus.APPLIED
    client = aioredis.Redis.from_url(redis_url)
    try:
        for key in ("mtr:{ttl1}:c:emails:2026-11", "mtr:{ttl1}:s:active:2026-11"):
            assert await client.expiretime(key) == expire_at, key
    finally:
        await client.aclose()
    assert await emails(store, "ttl1") == 3


async def test_only_steps_with_crossings_and_replays_report_the_outbox(
    store: RedisStateStore,
) -> None:
    """A step without crossings reports 0 even while earlier crossings wait in the outbox;
    the step that added them, and a replay of it (status 1), report the length."""
    now = time.time_ns() // 1_000_000
    crossing_step = sends("ob1", 8, first_offset=0)
    crossing = await apply_one(store, crossing_step, now + 1)
    assert (crossing.crossings, crossing.outbox_length) == (("id-at-risk",), 1)
    quiet = await apply_one(store, sends("ob1", 1, first_offset=8), now + 2)
    assert (quiet.status, quiet.crossings, quiet.outbox_length) == (ApplyStatus.APPLIED, (), 0)
    replay = await apply_one(store, crossing_step, now + 3)
    assert (replay.status, replay.outbox_length) == (ApplyStatus.ALREADY_APPLIED, 1)
