"""Small builders shared by the unit tests, and the reference meaning of an `AccountDelta`.

`MemoryState` applies deltas the way the state store must (it is the executable statement of
the semantics the Redis scripts implement): counters add, distinct sets skip members suppressed
before the period started, gauges keep the last presence per member, balances add.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st

from metering.core.accounts import Account, effective_limit
from metering.core.deltas import AccountDelta, Aggregation
from metering.core.events import DATA_FIELDS, MAX_QUANTITY, EventType, UsageEvent, decode_event
from metering.core.meters import fold_events
from metering.core.plan_loading import example_plans
from metering.core.plans import Plan
from metering.core.rfc3339 import format_ms, parse_ms
from metering.core.thresholds import crossed, crossing_id, crossing_scope

PLANS = example_plans()
_ids = itertools.count()


def draw_data(
    draw: st.DrawFn, event_type: EventType, texts: st.SearchStrategy[str]
) -> dict[str, Any]:
    """Valid `data` fields of an `event_type` event, every optional one present or not (the
    shared part of the tests' event strategies; free-text values come from `texts`)."""
    data: dict[str, Any] = {}
    for spec in DATA_FIELDS[event_type]:
        if not spec.required and draw(st.booleans()):
            continue
        if spec.boolean:
            data[spec.name] = draw(st.booleans())
        elif spec.values:
            data[spec.name] = draw(st.sampled_from(spec.values))
        elif spec.integer:
            data[spec.name] = draw(st.integers(1, MAX_QUANTITY))
        else:
            data[spec.name] = draw(texts)
    return data


def ms(text: str) -> int:
    """Epoch ms of an RFC 3339 time."""
    return parse_ms(text)


def event(
    event_type: EventType | str, time: str | int, /, account: str = "acct-1", **data: Any
) -> UsageEvent:
    """A valid event (unique id) of `event_type` at `time`, through the real decoder."""
    time_ms = time if isinstance(time, int) else ms(time)
    document = {
        "specversion": "1.0",
        "id": f"e-{next(_ids)}",
        "source": "tests",
        "type": str(event_type),
        "subject": account,
        "time": format_ms(time_ms),
        "data": data,
    }
    return decode_event(orjson.dumps(document), now_ms=time_ms)


def account(plan: Plan, account_id: str = "acct-1", **fields: Any) -> Account:
    return Account(id=account_id, plan_id=plan.id, **fields)


@dataclass
class MemoryState:
    """What an account's meters hold after deltas are applied (reference semantics)."""

    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    members: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    marks: set[str] = field(default_factory=set)
    crossings: list[tuple[str, str, str]] = field(default_factory=list)
    """(meter, scope, threshold) in the order they were reported."""

    def used(self, meter: str, period: str = "") -> int:
        key = (meter, period)
        if key in self.members:
            return len(self.members[key])
        return self.counters.get(key, 0)

    def apply(self, delta: AccountDelta) -> None:
        for member, at in delta.suppressions.items():
            known = self.suppressed.get(member)
            self.suppressed[member] = at if known is None else min(known, at)
        for key, meter_delta in delta.meters.items():
            aggregation = meter_delta.aggregation
            if aggregation is Aggregation.DISTINCT:
                members = self.members.setdefault(key, set())
                for member in meter_delta.members:
                    since = self.suppressed.get(member)
                    if since is None or since >= meter_delta.period_start_ms:
                        members.add(member)
            elif aggregation is Aggregation.GAUGE:
                members = self.members.setdefault(key, set())
                for member, present in meter_delta.members.items():
                    if present:
                        members.add(member)
                    else:
                        members.discard(member)
            else:
                self.counters[key] = self.counters.get(key, 0) + meter_delta.amount

    def apply_checked(self, delta: AccountDelta, acct: Account, plan: Plan) -> None:
        """Apply and report threshold crossings once per (meter, scope, threshold), as the
        store does with its crossing marks."""
        before = {key: self.used(*key) for key in delta.meters}
        self.apply(delta)
        for meter, period in delta.meters:
            limit = effective_limit(acct, plan, meter, period)
            if limit is None:
                continue
            scope = crossing_scope(period, limit)
            spec = plan.meter(meter)
            for threshold in crossed(
                before[(meter, period)], self.used(meter, period), limit, spec.thresholds
            ):
                mark = crossing_id(acct.id, meter, scope, threshold.name)
                if mark not in self.marks:
                    self.marks.add(mark)
                    self.crossings.append((meter, scope, threshold.name))


def run(
    plan: Plan,
    acct: Account,
    events: Iterable[UsageEvent],
    state: MemoryState | None = None,
) -> MemoryState:
    """Fold `events` as one batch and apply it (with crossing detection)."""
    state = state or MemoryState()
    state.apply_checked(fold_events(acct, plan, events), acct, plan)
    return state
