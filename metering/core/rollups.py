"""Period close: which periods are due, what a statement says, and how tiers follow (pure).

The closer (streams/period_close.py) and the backfill (metering/runtime/backfill.py) read
Redis, call these functions to decide, and write the decisions in one atomic Lua step per
account. Keeping every decision here, without Kafka or Redis, is what makes a live close and a
backfill produce the same rollups, statements and tier events: they are functions of the
closed totals only (no wall-clock time enters a body or an id).

Rules (docs/decisions/0004-period-close.md):

- A period is due when `end + grace <= watermark`, the watermark being the event-time
  watermark of the partition that carries the account's events (`account_watermark`). The
  processor judges lateness with the same partition watermark, so once a period is due no
  event can be counted into it any more: the frozen total is final.
- Ladder meters get a gap-free series: every period from the first one with data to the last
  due one is closed, months without usage as 0 (a gauge carries its level forward), because
  "the average of the last three months" must see a quiet month as a quiet month.
- Gauges have no periods. For a gauge placed in tiers the processor also writes each change
  into a per-month shadow (`gauge_month_meter`, see metering/core/gauge_months.py); closing a month
  applies its shadow to a snapshot set, so the level frozen is the level at the month's end in
  event time, not whatever the gauge holds when the closer happens to run.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from metering.core.accounts import Account, timezone_of
from metering.core.deltas import Aggregation
from metering.core.periods import Period, PeriodKind, next_period, period_of, zone
from metering.core.plans import Plan
from metering.core.rfc3339 import format_ms
from metering.core.tiers import Ladder, Placement, place

CLOSE_NAMESPACE = uuid.UUID("3b0f6a52-8d1e-5c47-a2f9-6e4d17c0b935")
"""uuid5 namespace of statement and tier event ids: changing it would re-announce them all."""

GAUGE_MONTH_SEP = "~"
"""Joins a gauge meter and a month in the name of the month's shadow (`customers~2026-07`).
Meter names are `[a-z][a-z0-9_]*`, so the separator never occurs in a real meter name."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

STATEMENT_TYPE = "usage.statement"
TIER_TYPE = "tier.placed"
STATEMENT_SCHEMA = "metering.statement/v1"
TIER_SCHEMA = "metering.tier/v1"
"""The `schema` of the statement and tier messages (docs/asyncapi.yaml, docs/schemas/)."""


class Code:
    """How the close step reads a period's total (the codes of lua/close_period.lua)."""

    COUNTER = "c"
    """GET of the counter (count and sum meters)."""
    DISTINCT = "d"
    """SCARD of the distinct set."""
    GAUGE_MONTH = "m"
    """Level of the gauge's snapshot set after applying the month's shadow."""


def gauge_month_meter(meter: str, month: str) -> str:
    """Name of the shadow that collects a ladder gauge's changes of one month."""
    return f"{meter}{GAUGE_MONTH_SEP}{month}"


@dataclass(frozen=True, slots=True)
class OpenSlot:
    """One field of an account's open-period index (`mtr:{A}:p`)."""

    meter: str
    """The plan's meter (for a gauge month shadow, the gauge)."""
    period: str
    gauge_month: bool


def parse_open_field(field: str) -> OpenSlot | None:
    """`meter:period` (or `gauge~month:month`) -> `OpenSlot`; None for a field we do not know."""
    name, sep, period = field.rpartition(":")
    if not sep or not name or not period:
        return None
    base, tilde, month = name.partition(GAUGE_MONTH_SEP)
    if tilde:
        return OpenSlot(base, month, gauge_month=True) if month == period else None
    return OpenSlot(name, period, gauge_month=False)


def is_due(period_end_ms: int, grace_ms: int, watermark_ms: int) -> bool:
    """A period closes once the watermark has passed its end plus the grace."""
    return period_end_ms + grace_ms <= watermark_ms


def account_watermark(partitions: Iterable[int], watermarks: Mapping[int, int]) -> int | None:
    """The event-time watermark that decides an account's periods.

    `partitions` are those that carry the account's events (its fences); normally one, more
    only after the topic was repartitioned. A partition without a stored watermark counts as 0
    (nothing is due). None when the account has no partition: none of its events was applied.
    """
    marks = [watermarks.get(p, 0) for p in partitions]
    return min(marks) if marks else None


def period_from_key(kind: PeriodKind, key: str, tz: str, anchor: date | None = None) -> Period:
    """The period named `key` (see metering.core.periods for the key formats)."""
    text = key[1:] if key[:1] in ("d", "b", "y") else key
    parts = [int(p) for p in text.split("-")]
    start = date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    local = datetime(start.year, start.month, start.day, tzinfo=zone(tz))
    # Probe an hour in: local midnight can fall in a DST gap (the period starts at the real
    # start of the day), and no period is shorter than a day.
    period = period_of(kind, (local - _EPOCH) // _MS + 3_600_000, tz, anchor)
    if period.key != key:
        raise ValueError(f"{key!r} is not a {kind.value} period key")
    return period


def statement_id(account: str, meter: str, period: str) -> str:
    """Deterministic id of the statement of (account, meter, period)."""
    return str(uuid.uuid5(CLOSE_NAMESPACE, f"statement\x1f{account}\x1f{meter}\x1f{period}"))


def tier_event_id(account: str, ladder: str, as_of: str) -> str:
    """Deterministic id of the placement decided when `as_of` closed."""
    return str(uuid.uuid5(CLOSE_NAMESPACE, f"tier\x1f{account}\x1f{ladder}\x1f{as_of}"))


@dataclass(frozen=True, slots=True)
class DueSlot:
    """A period to freeze now."""

    meter: str
    period: Period
    kind: PeriodKind
    code: str
    """`Code.*`: how its total is read."""
    aggregation: Aggregation
    open_field: str = ""
    """Its field in the open-period index ("" for a ladder month without data)."""


def due_slots(
    account: Account,
    plan: Plan,
    *,
    watermark_ms: int,
    grace_ms: int,
    open_fields: Mapping[str, int],
    closed: Mapping[str, Collection[str]],
    not_before_ms: int = 0,
    gauges: bool = True,
) -> list[DueSlot]:
    """Periods of `account` to freeze, in (meter, time) order.

    `open_fields` is the open-period index (field -> period end); `closed` the periods already
    frozen per meter (the rollup keys). A due field that is already frozen is returned too, so
    the close step removes it from the index. Periods starting before `not_before_ms` are left
    alone (a backfill from a time did not see all their events). `gauges=False` leaves gauge
    months alone (a backfill that did not replay a gauge's whole history cannot know its level).
    """
    tz = timezone_of(account, plan)
    anchor = account.contract_date
    slots: dict[tuple[str, str], DueSlot] = {}
    for field, end_ms in open_fields.items():
        slot = parse_open_field(field)
        if slot is None or not is_due(end_ms, grace_ms, watermark_ms):
            continue
        shape = _shape(plan, slot.meter, gauges=gauges)
        if shape is None or (shape[1] == Code.GAUGE_MONTH) != slot.gauge_month:
            continue
        kind, code, aggregation = shape
        period = period_from_key(kind, slot.period, tz, anchor)
        if period.start_ms >= not_before_ms:
            slots[(slot.meter, period.key)] = DueSlot(
                slot.meter, period, kind, code, aggregation, field
            )
    for ladder in plan.ladders:
        shape = _shape(plan, ladder.meter, gauges=gauges)
        if shape is None:
            continue
        kind, code, aggregation = shape
        frozen = closed.get(ladder.meter, ())
        known = [period_from_key(kind, key, tz, anchor) for key in frozen]
        known = [p for p in known if p.start_ms >= not_before_ms]
        if known:  # the series is gap-free up to its last frozen period: continue after it
            period = next_period(kind, max(known, key=lambda p: p.start_ms), tz, anchor)
        else:
            pending = [s.period for s in slots.values() if s.meter == ladder.meter]
            if not pending:
                continue
            period = min(pending, key=lambda p: p.start_ms)
        while is_due(period.end_ms, grace_ms, watermark_ms):
            if (ladder.meter, period.key) not in slots and period.key not in frozen:
                slots[(ladder.meter, period.key)] = DueSlot(
                    ladder.meter, period, kind, code, aggregation
                )
            period = next_period(kind, period, tz, anchor)
    return sorted(slots.values(), key=lambda s: (s.meter, s.period.start_ms))


def _shape(plan: Plan, meter: str, *, gauges: bool) -> tuple[PeriodKind, str, Aggregation] | None:
    """(period kind, close code, aggregation) of a meter that can be closed, else None."""
    if not plan.has_meter(meter):
        return None
    spec = plan.meter(meter)
    if spec.aggregation is Aggregation.GAUGE:
        return (PeriodKind.CALENDAR_MONTH, Code.GAUGE_MONTH, spec.aggregation) if gauges else None
    if spec.period is None:  # balances: a level with no history and no tiers
        return None
    code = Code.DISTINCT if spec.aggregation is Aggregation.DISTINCT else Code.COUNTER
    return spec.period, code, spec.aggregation


def gauge_levels(
    level: int, present: Mapping[str, bool], months: Sequence[Iterable[str]]
) -> list[int]:
    """Levels at the end of consecutive months, from the level before the first one.

    `present` says which members touched in those months are in the snapshot now; each month
    is its shadow's entries: `+member` (present at the month's end) or `-member` (absent).
    """
    state = dict(present)
    levels = []
    for ops in months:
        for op in ops:
            member, now_present = op[1:], op[:1] == "+"
            was = state.get(member, False)
            if now_present != was:
                level += 1 if now_present else -1
                state[member] = now_present
        levels.append(level)
    return levels


def statement_body(account: Account, plan: Plan, slot: DueSlot, total: int) -> dict[str, object]:
    """The period statement billing receives: a pure function of the frozen total."""
    body: dict[str, object] = {
        "schema": STATEMENT_SCHEMA,
        "version": 1,
        "type": STATEMENT_TYPE,
        "id": statement_id(account.id, slot.meter, slot.period.key),
        "account": account.id,
        "meter": slot.meter,
        "aggregation": slot.aggregation.value,
        "measure": "level_at_end" if slot.code == Code.GAUGE_MONTH else "total",
        "period": slot.period.key,
        "kind": slot.kind.value,
        "start": format_ms(slot.period.start_ms),
        "end": format_ms(slot.period.end_ms),
        "timezone": timezone_of(account, plan),
        "total": total,
    }
    return body


@dataclass(frozen=True, slots=True)
class Point:
    """One closed period of a ladder's series."""

    period: Period
    total: int


@dataclass(frozen=True, slots=True)
class StoredPlacement:
    """The placement last decided for a ladder (what `mtr:{A}:t` holds)."""

    as_of: str
    up_to: int | None
    complete: bool


@dataclass(frozen=True, slots=True)
class TierDecision:
    """The placement as of one closed period; `event` when it is published."""

    ladder: Ladder
    as_of: str
    placement: Placement
    months: tuple[Point, ...]
    """The totals averaged (oldest first)."""
    previous: StoredPlacement | None
    event: bool

    @property
    def change(self) -> str:
        """`first`, `up`, `down`, or `completed` (same tier, no longer provisional)."""
        if self.previous is None:
            return "first"
        before, after = _rank(self.previous.up_to), _rank(self.placement.up_to)
        if after == before:
            return "completed" if self.placement.complete else "unchanged"
        return "up" if after > before else "down"


def _rank(up_to: int | None) -> float:
    return float("inf") if up_to is None else up_to


def placements_since(
    ladder: Ladder, series: Sequence[Point], stored: StoredPlacement | None, after_ms: int | None
) -> list[TierDecision]:
    """The placement as of every period of `series` that starts after `after_ms`.

    `series` is the ladder meter's closed periods, oldest first and without gaps; each
    placement averages the last `ladder.window` of them up to its period
    (metering.core.tiers.place).
    An event is due on the first placement and whenever the tier or its completeness changes:
    a single month over the tier leaves the average, and so the tier, where it was.
    """
    decisions = []
    previous = stored
    for i, point in enumerate(series):
        if after_ms is not None and point.period.start_ms <= after_ms:
            continue
        placement = place(ladder, [p.total for p in series[: i + 1]])
        months = tuple(series[max(0, i + 1 - ladder.window) : i + 1])
        event = previous is None or (placement.up_to, placement.complete) != (
            previous.up_to,
            previous.complete,
        )
        decisions.append(TierDecision(ladder, point.period.key, placement, months, previous, event))
        previous = StoredPlacement(point.period.key, placement.up_to, placement.complete)
    return decisions


def fraction_text(value: Fraction) -> str:
    """Exact text of a Fraction: `20000` or `61001/3`."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


def decimal_text(value: Fraction, places: int = 2) -> str:
    """A Fraction rounded half up to `places` decimals, for display only (`20333.67`)."""
    scale = 10**places
    scaled = (value * scale * 2 + 1) // 2
    whole, rest = divmod(scaled, scale)
    return f"{whole}.{rest:0{places}d}" if places else str(whole)


def placement_record(decision: TierDecision) -> dict[str, object]:
    """What is stored per ladder in `mtr:{A}:t` (the last decision, event or not)."""
    placement = decision.placement
    return {
        "as_of": decision.as_of,
        "up_to": placement.up_to,
        "average": fraction_text(placement.average),
        "months_used": placement.months_used,
        "complete": placement.complete,
        "months": [{"period": p.period.key, "total": p.total} for p in decision.months],
    }


def tier_body(account: str, decision: TierDecision) -> dict[str, object]:
    """The tier event: the placement and the monthly totals and average that led to it."""
    placement = decision.placement
    ladder = decision.ladder
    return {
        "schema": TIER_SCHEMA,
        "version": 1,
        "type": TIER_TYPE,
        "id": tier_event_id(account, ladder.name, decision.as_of),
        "account": account,
        "ladder": ladder.name,
        "meter": ladder.meter,
        "as_of": decision.as_of,
        "up_to": placement.up_to,
        "previous_up_to": None if decision.previous is None else decision.previous.up_to,
        "change": decision.change,
        "average": fraction_text(placement.average),
        "average_display": decimal_text(placement.average),
        "months": [{"period": p.period.key, "total": p.total} for p in decision.months],
        "months_used": placement.months_used,
        "window": ladder.window,
        "complete": placement.complete,
    }


def stored_placement(record: Mapping[str, object]) -> StoredPlacement:
    """Read back a `placement_record`."""
    up_to = record.get("up_to")
    return StoredPlacement(
        as_of=str(record["as_of"]),
        up_to=up_to if isinstance(up_to, int) else None,
        complete=bool(record.get("complete")),
    )
