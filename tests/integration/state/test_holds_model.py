"""Holds in Redis against the reference model (`metering.core.holds.HoldLedger`).

Hypothesis draws sequences of admissions (counter, balance or both), captures by events (the
processor's apply step, through `RedisStateStore.apply`), releases and clock ticks past expiry;
after every operation the scripts (lua/holds.lua, lua/apply.lua) and the model must agree on
what was admitted, what is held, what is used and what a release freed.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metering.core.deltas import AccountDelta, Aggregation, Contribution
from metering.core.holds import HoldKind, HoldLedger, HoldRequest
from metering.core.ports import ApplyStatus, ApplyStep
from metering.state import keys
from metering.state.redis_store import RedisStateStore

pytestmark = pytest.mark.integration

T0 = 1_800_000_000_000
TTL_MS = 1_000
EMAILS = HoldRequest("emails", "2026-11", HoldKind.LIMIT, 20, 1)
CREDITS = HoldRequest("credits", "", HoldKind.BALANCE, None, 1)
START_USED = 12
START_BALANCE = 9

admits = st.tuples(
    st.just("admit"),
    st.sampled_from(["emails", "credits", "both"]),
    st.integers(1, 5),
    st.integers(1, 3),
)
captures = st.tuples(
    st.just("capture"),
    st.integers(0, 7),
    st.sampled_from(["emails", "credits"]),
    st.integers(1, 4),
)
releases = st.tuples(st.just("release"), st.integers(0, 7), st.just(""), st.just(0))
ticks = st.tuples(st.just("tick"), st.sampled_from([0, 400, TTL_MS]), st.just(""), st.just(0))
operations = st.lists(st.one_of(admits, captures, releases, ticks), min_size=1, max_size=25)


def _requests(which: str, per: int) -> list[HoldRequest]:
    chosen = {"emails": [EMAILS], "credits": [CREDITS], "both": [EMAILS, CREDITS]}[which]
    return [HoldRequest(r.meter, r.period, r.kind, r.limit, per) for r in chosen]


async def _run(url: str, ops: list[tuple[Any, ...]]) -> None:
    account = f"m-{uuid.uuid4().hex[:12]}"
    store = RedisStateStore.from_url(url)
    model = HoldLedger(used={EMAILS.slot: START_USED, CREDITS.slot: START_BALANCE})
    offsets = itertools.count()
    now = T0
    holds: list[str] = []
    try:
        client = store._client  # the test seeds the two levels directly
        await client.set(keys.counter_key(account, "emails", "2026-11"), START_USED)
        await client.set(keys.balance_key(account, "credits"), START_BALANCE)
        for op, a, b, c in ops:
            if op == "admit":
                hold = uuid.uuid4().hex
                holds.append(hold)
                requests = _requests(a, c)
                got = await store.hold(
                    account, hold, requests, b, now_ms=now, expires_ms=now + TTL_MS
                )
                want = model.admit(hold, requests, b, now_ms=now, expires_ms=now + TTL_MS)
                assert got.admitted == want, (op, a, b, c)
                if want:  # the rule, right after an admission that held something
                    if a != "credits":
                        assert model.used[EMAILS.slot] + model.held(EMAILS.slot, now) <= 20
                    if a != "emails":
                        assert model.used[CREDITS.slot] - model.held(CREDITS.slot, now) >= 0
            elif op == "capture":
                hold = holds[a] if a < len(holds) else f"unknown-{a}"
                request = EMAILS if b == "emails" else CREDITS
                balance = request.kind is HoldKind.BALANCE
                aggregation = Aggregation.BALANCE if balance else Aggregation.COUNT
                contribution = Contribution(
                    request.meter, request.period, aggregation, -c if balance else c
                )
                delta = AccountDelta(account)
                delta.add(contribution)
                delta.capture(hold, contribution)
                delta.note_event(uuid.uuid4().hex, next(offsets))
                [outcome] = await store.apply(
                    [ApplyStep(delta, "holds-topic", 0, {})], dedup_window_s=3600, now_ms=now
                )
                assert outcome.status is ApplyStatus.APPLIED
                model.capture(hold, request.slot, c, now_ms=now, balance=balance)
            elif op == "release":
                hold = holds[a] if a < len(holds) else f"unknown-{a}"
                assert await store.release_hold(account, hold, now_ms=now) == model.release(
                    hold, now_ms=now
                )
            else:
                now += a
            slots = [EMAILS.slot, CREDITS.slot]
            held = await store.held(account, slots, now_ms=now)
            assert held == {s: model.held(s, now) for s in slots}, ops
            amounts = await store.read_amounts(
                account,
                [("emails", "2026-11", Aggregation.COUNT), ("credits", "", Aggregation.BALANCE)],
            )
            assert amounts[("emails", "2026-11")] == model.used[EMAILS.slot]
            assert amounts[("credits", "")] == model.used[CREDITS.slot]
    finally:
        await store.close()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_holds_agree_with_the_reference_model(redis_url: str, ops: list[tuple[Any, ...]]) -> None:
    asyncio.run(_run(redis_url, ops))
