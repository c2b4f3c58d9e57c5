"""Invariants: batching and ordering do not change totals; crossings are reported once."""

from __future__ import annotations

import itertools
import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.accounts import Account
from metering.core.events import EventType, UsageEvent
from metering.core.meters import fold_events
from metering.core.plan_loading import parse_plan
from tests.unit.helpers import MemoryState, event, ms

PLAN = parse_plan(
    """
id = "props"
name = "Properties"
timezone = "Europe/Brussels"

[meters.messages]
aggregation = "count"
period = "calendar_month"
limit = 40
events = [{ type = "sms.sent" }]
thresholds = [
  { name = "half", ratio = "1/2" },
  { name = "at_risk", ratio = "4/5" },
  { name = "reached", ratio = "1" },
  { name = "exceeded", ratio = "1", strict = true },
]

[meters.segments]
aggregation = "sum"
period = "calendar_month"
limit = 90
events = [{ type = "sms.sent" }]

[meters.recipients]
aggregation = "distinct"
period = "calendar_month"
limit = 6
exclude_suppressed = true
events = [{ type = "sms.sent" }]

[meters.audience]
aggregation = "gauge"
events = [{ type = "contact.added" }, { type = "contact.deleted", effect = "remove" }]

[meters.credits]
aggregation = "balance"
events = [{ type = "sms.credits_added" }, { type = "sms.sent", effect = "remove" }]
""",
    source="props.toml",
)
ACCOUNT = Account("acct-1", "props")
CONTACTS = [f"c{i}" for i in range(10)]
NOV = ms("2026-10-31T23:00:00Z")  # 1 November, 00:00 in Brussels
DEC = ms("2026-11-30T23:00:00Z")
JAN = ms("2026-12-31T23:00:00Z")


@st.composite
def usage(draw: st.DrawFn, *, gauges: bool = True) -> UsageEvent:
    time_ms = draw(st.integers(NOV, JAN - 1))
    kinds = ["sms", "sms", "credits"] + (["added", "deleted"] if gauges else [])
    kind = draw(st.sampled_from(kinds))
    contact = draw(st.sampled_from(CONTACTS))
    if kind == "sms":
        return event(EventType.SMS_SENT, time_ms, contact=contact, quantity=draw(st.integers(1, 5)))
    if kind == "credits":
        return event(EventType.SMS_CREDITS_ADDED, time_ms, quantity=draw(st.integers(1, 50)))
    if kind == "added":
        return event(EventType.CONTACT_ADDED, time_ms, contact=contact, origin="api")
    return event(EventType.CONTACT_DELETED, time_ms, contact=contact)


@st.composite
def suppressions(draw: st.DrawFn) -> list[UsageEvent]:
    """Suppressions known before the sends (they come first in the partition)."""
    chosen = draw(st.lists(st.sampled_from(CONTACTS), max_size=4, unique=True))
    return [
        event(
            EventType.CONTACT_SUPPRESSED,
            draw(st.integers(NOV - 86_400_000, DEC)),
            contact=c,
            reason="opted_out",
        )
        for c in chosen
    ]


def split(events: list[UsageEvent], cuts: list[int]) -> list[list[UsageEvent]]:
    points = sorted({c % (len(events) + 1) for c in cuts})
    bounds = [0, *points, len(events)]
    return [events[a:b] for a, b in itertools.pairwise(bounds)]


def apply_batches(batches: list[list[UsageEvent]]) -> MemoryState:
    state = MemoryState()
    for batch in batches:
        state.apply_checked(fold_events(ACCOUNT, PLAN, batch), ACCOUNT, PLAN)
    return state


def totals(state: MemoryState) -> tuple[object, ...]:
    return (
        dict(state.counters),
        {k: frozenset(v) for k, v in state.members.items() if v},
        dict(state.suppressed),
    )


@settings(max_examples=150, deadline=None)
@given(suppressions(), st.lists(usage(), max_size=60), st.lists(st.integers(0, 100), max_size=8))
def test_totals_do_not_depend_on_batching(
    early: list[UsageEvent], events: list[UsageEvent], cuts: list[int]
) -> None:
    sequence = early + events
    whole = apply_batches([sequence])
    batched = apply_batches(split(sequence, cuts))
    one_by_one = apply_batches([[e] for e in sequence])
    assert totals(whole) == totals(batched) == totals(one_by_one)
    assert Counter(whole.crossings) == Counter(batched.crossings)


@settings(max_examples=150, deadline=None)
@given(
    suppressions(),
    st.lists(usage(gauges=False), max_size=60),
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 100), max_size=8),
)
def test_windowed_totals_do_not_depend_on_order(
    early: list[UsageEvent], events: list[UsageEvent], rnd: random.Random, cuts: list[int]
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a = apply_batches([early + events])
    b = apply_batches(split(early + shuffled, cuts))
    assert totals(a) == totals(b)


@settings(max_examples=150, deadline=None)
@given(st.lists(usage(gauges=False), max_size=80), st.lists(st.integers(0, 100), max_size=10))
def test_each_crossing_is_reported_exactly_once_however_events_are_split(
    events: list[UsageEvent], cuts: list[int]
) -> None:
    state = apply_batches(split(events, cuts))
    reported = Counter(state.crossings)
    assert all(count == 1 for count in reported.values())
    for meter_name in ("messages", "segments", "recipients"):
        meter = PLAN.meter(meter_name)
        for period in ("2026-11", "2026-12"):
            used = state.used(meter_name, period)
            limit = {"messages": 40, "segments": 90, "recipients": 6}[meter_name]
            for threshold in meter.thresholds:
                expected = 1 if threshold.reached(used, limit) else 0
                assert reported[(meter_name, period, threshold.name)] == expected
