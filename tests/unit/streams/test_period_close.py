"""Period close, pure rules: due periods, ladder series, statements, tier decisions (ADR 0004)."""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from metering.core.account_codec import account_from_json
from metering.core.accounts import Account
from metering.core.deltas import Aggregation
from metering.core.directory import Directory
from metering.core.gauge_months import GaugeMonths
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.periods import PeriodKind, next_period, period_of
from metering.core.plan_loading import load_plan
from metering.core.ports import CloseStatus, CloseStep, Freeze, LadderWrites, TierWrite
from metering.core.rfc3339 import parse_ms
from metering.core.rollups import (
    Code,
    OpenSlot,
    Point,
    StoredPlacement,
    account_watermark,
    decimal_text,
    due_slots,
    fraction_text,
    gauge_levels,
    gauge_month_meter,
    is_due,
    parse_open_field,
    period_from_key,
    placement_record,
    placements_since,
    statement_body,
    statement_id,
    stored_placement,
    tier_body,
    tier_event_id,
)
from metering.core.tiers import Ladder
from metering.state.codec import decode_close, encode_close
from tests.unit.helpers import PLANS

PLAN = load_plan(Path(__file__).resolve().parents[2] / "integration" / "plans" / "close-plan.toml")
ACCOUNT = Account(id="a1", plan_id="close-plan")
CLERK = PLANS["clerk"]
SHOP = Account(id="shop", plan_id="clerk")  # Europe/Copenhagen
HOUR = 3_600_000


def ms(text: str) -> int:
    return parse_ms(text)


def month(key: str, tz: str = "UTC") -> int:
    """End (ms) of calendar month `key`."""
    return period_from_key(PeriodKind.CALENDAR_MONTH, key, tz).end_ms


# -- open-period fields, due, watermarks -------------------------------------------------------


def test_open_fields_name_a_meter_and_period_or_a_gauge_month() -> None:
    assert parse_open_field("searches:2026-07") == OpenSlot("searches", "2026-07", False)
    assert parse_open_field("daily_sends:d2026-07-03") == OpenSlot(
        "daily_sends", "d2026-07-03", False
    )
    shadow = gauge_month_meter("customers", "2026-07")
    assert parse_open_field(f"{shadow}:2026-07") == OpenSlot("customers", "2026-07", True)
    assert parse_open_field(f"{shadow}:2026-08") is None  # a shadow names its own month
    assert parse_open_field("nonsense") is None


def test_a_period_is_due_once_the_watermark_passed_its_end_plus_the_grace() -> None:
    end = month("2026-07")
    assert not is_due(end, HOUR, end + HOUR - 1)
    assert is_due(end, HOUR, end + HOUR)


def test_an_account_is_decided_by_the_watermark_of_its_own_partitions() -> None:
    marks = {0: 500, 1: 900, 2: 100}
    assert account_watermark([1], marks) == 900  # partition 2 lagging does not hold it back
    assert account_watermark([0, 1], marks) == 500  # repartitioned: the slower one decides
    assert account_watermark([3], marks) == 0  # no stored watermark yet: nothing is due
    assert account_watermark([], marks) is None


@pytest.mark.parametrize(
    ("kind", "key", "tz", "anchor"),
    [
        (PeriodKind.CALENDAR_MONTH, "2026-07", "Europe/Copenhagen", None),
        (PeriodKind.CALENDAR_MONTH, "2026-03", "America/Santiago", None),
        (PeriodKind.CALENDAR_YEAR, "2026", "Asia/Kathmandu", None),
        (PeriodKind.DAY, "d2026-03-29", "Europe/Copenhagen", None),
        (PeriodKind.BILLING_MONTH, "b2026-02-28", "UTC", date(2026, 1, 31)),
        (PeriodKind.BILLING_YEAR, "y2026-03-15", "Australia/Lord_Howe", date(2025, 3, 15)),
    ],
)
def test_period_keys_name_their_period(
    kind: PeriodKind, key: str, tz: str, anchor: date | None
) -> None:
    period = period_from_key(kind, key, tz, anchor)
    assert period.key == key
    assert period_of(kind, period.start_ms, tz, anchor) == period


def test_period_keys_round_trip_over_two_years_of_days_in_a_dst_zone() -> None:
    tz = "America/Santiago"  # DST changes at midnight: days that start at 01:00
    period = period_of(PeriodKind.DAY, ms("2025-01-01T12:00:00Z"), tz)
    for _ in range(730):
        assert period_from_key(PeriodKind.DAY, period.key, tz) == period
        period = next_period(PeriodKind.DAY, period, tz)


def test_a_key_of_another_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a calendar_month"):
        period_from_key(PeriodKind.CALENDAR_MONTH, "2026", "UTC")


# -- which periods close -----------------------------------------------------------------------


def test_due_fields_close_and_ladder_months_without_usage_close_as_zero() -> None:
    open_fields = {
        "searches:2026-07": month("2026-07"),
        "searches:2026-09": month("2026-09"),
        "views:2026-09": month("2026-09"),
        "searches:2026-10": month("2026-10"),
    }
    slots = due_slots(
        ACCOUNT,
        PLAN,
        watermark_ms=month("2026-09") + HOUR,
        grace_ms=HOUR,
        open_fields=open_fields,
        closed={},
    )
    got = [(s.meter, s.period.key, s.code, s.open_field) for s in slots]
    assert got == [
        ("searches", "2026-07", Code.COUNTER, "searches:2026-07"),
        ("searches", "2026-08", Code.COUNTER, ""),  # no searches in August: 0 in the series
        ("searches", "2026-09", Code.COUNTER, "searches:2026-09"),
        ("views", "2026-09", Code.COUNTER, "views:2026-09"),  # no ladder: no filling
    ]


def test_a_ladder_series_continues_after_its_last_frozen_period() -> None:
    slots = due_slots(
        ACCOUNT,
        PLAN,
        watermark_ms=month("2026-10") + HOUR,
        grace_ms=HOUR,
        open_fields={},
        closed={"searches": ["2026-06", "2026-07"]},
    )
    assert [(s.meter, s.period.key) for s in slots] == [
        ("searches", "2026-08"),
        ("searches", "2026-09"),
        ("searches", "2026-10"),
    ]


def test_gauge_months_close_in_order_and_carry_on_without_changes() -> None:
    shadow = gauge_month_meter("customers", "2026-07")
    slots = due_slots(
        ACCOUNT,
        PLAN,
        watermark_ms=month("2026-09") + HOUR,
        grace_ms=HOUR,
        open_fields={f"{shadow}:2026-07": month("2026-07")},
        closed={},
    )
    assert [(s.period.key, s.code, s.aggregation) for s in slots] == [
        ("2026-07", Code.GAUGE_MONTH, Aggregation.GAUGE),
        ("2026-08", Code.GAUGE_MONTH, Aggregation.GAUGE),
        ("2026-09", Code.GAUGE_MONTH, Aggregation.GAUGE),
    ]
    none = due_slots(
        ACCOUNT,
        PLAN,
        watermark_ms=month("2026-09") + HOUR,
        grace_ms=HOUR,
        open_fields={f"{shadow}:2026-07": month("2026-07")},
        closed={},
        gauges=False,
    )
    assert none == []


def test_a_backfill_from_a_time_leaves_periods_that_started_before_it_open() -> None:
    open_fields = {"searches:2026-07": month("2026-07"), "searches:2026-08": month("2026-08")}
    slots = due_slots(
        ACCOUNT,
        PLAN,
        watermark_ms=month("2026-08") + HOUR,
        grace_ms=HOUR,
        open_fields=open_fields,
        closed={},
        not_before_ms=ms("2026-07-15T00:00:00Z"),
    )
    assert [s.period.key for s in slots] == ["2026-08"]


def test_an_already_frozen_field_is_returned_so_the_index_is_cleaned() -> None:
    slots = due_slots(
        ACCOUNT,
        PLAN,
        watermark_ms=month("2026-07") + HOUR,
        grace_ms=HOUR,
        open_fields={"views:2026-07": month("2026-07")},
        closed={"views": ["2026-07"]},
    )
    assert [(s.meter, s.period.key, s.open_field) for s in slots] == [
        ("views", "2026-07", "views:2026-07")
    ]


def test_months_are_the_accounts_own_calendar_months() -> None:
    # Copenhagen's July ends 2026-07-31T22:00Z; with a 1 h grace it is due at 23:00Z.
    end = month("2026-07", "Europe/Copenhagen")
    assert end == ms("2026-07-31T22:00:00Z")
    fields = {"searches:2026-07": end}
    kwargs = {"grace_ms": HOUR, "open_fields": fields, "closed": {}}
    assert due_slots(SHOP, CLERK, watermark_ms=end + HOUR - 1, **kwargs) == []  # type: ignore[arg-type]
    [slot] = due_slots(SHOP, CLERK, watermark_ms=end + HOUR, **kwargs)  # type: ignore[arg-type]
    assert slot.period.key == "2026-07"


# -- gauge levels ------------------------------------------------------------------------------


def test_gauge_levels_apply_each_months_final_states_to_the_previous_level() -> None:
    present = {"a": True, "b": True, "c": False, "d": False}
    months = [
        {"+c", "-a"},  # c joins, a leaves: 2 -> 2
        {"+d", "+c"},  # d joins, c was already in: 3
        set(),  # nothing changes
        {"-x"},  # removing a member who never was changes nothing
    ]
    assert gauge_levels(2, present, months) == [2, 3, 3, 3]


# -- tiers: the seed's numbers -----------------------------------------------------------------


def series(ladder: Ladder, totals: list[int], first: str = "2026-05") -> list[Point]:
    kind, tz = PeriodKind.CALENDAR_MONTH, "Europe/Copenhagen"
    period = period_from_key(kind, first, tz)
    points = []
    for total in totals:
        points.append(Point(period, total))
        period = next_period(kind, period, tz)
    return points


@pytest.mark.parametrize(
    ("ladder", "months", "tier"),
    [
        ("search", [19_000, 20_000, 21_000], 25_000),  # "avg. 20.000 searches -> up to 25.000"
        ("recommendations", [180_000, 200_000, 220_000], 250_000),
        ("email", [40_000, 40_000, 40_000], 50_000),
        ("email_snippets", [35_000, 40_000, 45_000], 50_000),
        ("audience", [21_000, 22_000, 23_000], 25_000),
    ],
)
def test_the_clerk_seed_places_by_the_three_month_average(
    ladder: str, months: list[int], tier: int
) -> None:
    lad = CLERK.ladder(ladder)
    decisions = placements_since(lad, series(lad, months), None, None)
    last = decisions[-1]
    assert last.placement.up_to == tier
    assert last.placement.average == sum(months) // 3
    assert last.placement.complete
    assert [p.total for p in last.months] == months


def test_first_placement_is_provisional_and_completing_it_is_an_event() -> None:
    lad = CLERK.ladder("search")
    decisions = placements_since(lad, series(lad, [20_000, 20_000, 20_000]), None, None)
    assert [(d.placement.months_used, d.placement.complete, d.event) for d in decisions] == [
        (1, False, True),  # first placement, on one month: says so
        (2, False, False),  # same tier, still provisional: nothing to announce
        (3, True, True),  # complete now
    ]
    assert [d.change for d in decisions] == ["first", "unchanged", "completed"]


def test_a_temporary_spike_does_not_move_the_tier_but_a_higher_average_does() -> None:
    lad = CLERK.ladder("search")
    totals = [20_000, 20_000, 20_000, 30_000, 20_000, 20_000, 30_000, 30_000]
    decisions = placements_since(lad, series(lad, totals), None, None)
    tiers = [d.placement.up_to for d in decisions]
    assert tiers == [25_000] * 7 + [50_000]
    # Month 4 is over 25,000 on its own (30,000) but the average is 23,333.33: no change.
    assert decisions[3].placement.average == Fraction(70_000, 3)
    assert not decisions[3].event
    assert [d.event for d in decisions[3:7]] == [False] * 4
    # The average of the last three (26,666.67) moves it up.
    assert decisions[7].event
    assert decisions[7].change == "up"
    assert decisions[7].previous == StoredPlacement("2026-11", 25_000, True)


def test_only_periods_after_the_stored_placement_are_decided() -> None:
    lad = CLERK.ladder("search")
    points = series(lad, [20_000, 20_000, 20_000, 60_000])
    stored = StoredPlacement("2026-07", 25_000, True)
    decisions = placements_since(lad, points, stored, points[2].period.start_ms)
    assert [(d.as_of, d.placement.up_to, d.event) for d in decisions] == [("2026-08", 50_000, True)]


def test_tier_events_carry_the_totals_and_the_exact_average() -> None:
    lad = CLERK.ladder("search")
    points = series(lad, [20_000, 20_000, 25_002])
    decision = placements_since(lad, points, None, None)[-1]
    body = tier_body("shop", decision)
    assert body == {
        "schema": "metering.tier/v1",
        "version": 1,
        "type": "tier.placed",
        "id": tier_event_id("shop", "search", "2026-07"),
        "account": "shop",
        "ladder": "search",
        "meter": "searches",
        "as_of": "2026-07",
        "up_to": 25_000,
        "previous_up_to": 25_000,
        "change": "completed",
        "average": "65002/3",
        "average_display": "21667.33",
        "months": [
            {"period": "2026-05", "total": 20_000},
            {"period": "2026-06", "total": 20_000},
            {"period": "2026-07", "total": 25_002},
        ],
        "months_used": 3,
        "window": 3,
        "complete": True,
    }
    record = placement_record(decision)
    assert stored_placement(record) == StoredPlacement("2026-07", 25_000, True)


def test_above_every_tier_is_up_to_none() -> None:
    lad = CLERK.ladder("audience")
    [decision] = placements_since(lad, series(lad, [200_000]), None, None)
    assert decision.placement.up_to is None
    assert tier_body("shop", decision)["up_to"] is None


def test_exact_numbers_are_written_as_fractions_and_shown_rounded() -> None:
    assert fraction_text(Fraction(20_000)) == "20000"
    assert fraction_text(Fraction(61_001, 3)) == "61001/3"
    assert decimal_text(Fraction(61_001, 3)) == "20333.67"
    assert decimal_text(Fraction(1, 200)) == "0.01"  # half up


# -- statements --------------------------------------------------------------------------------


def test_statements_are_a_function_of_the_frozen_total() -> None:
    [slot] = due_slots(
        SHOP,
        CLERK,
        watermark_ms=ms("2026-08-02T00:00:00Z"),
        grace_ms=HOUR,
        open_fields={"searches:2026-07": month("2026-07", "Europe/Copenhagen")},
        closed={"searches": []},
    )
    body = statement_body(SHOP, CLERK, slot, 20_000)
    assert body == {
        "schema": "metering.statement/v1",
        "version": 1,
        "type": "usage.statement",
        "id": statement_id("shop", "searches", "2026-07"),
        "account": "shop",
        "meter": "searches",
        "aggregation": "count",
        "measure": "total",
        "period": "2026-07",
        "kind": "calendar_month",
        "start": "2026-06-30T22:00:00Z",
        "end": "2026-07-31T22:00:00Z",
        "timezone": "Europe/Copenhagen",
        "total": 20_000,
    }
    assert statement_id("shop", "searches", "2026-07") == statement_id(
        "shop", "searches", "2026-07"
    )
    assert statement_id("shop", "searches", "2026-07") != statement_id(
        "shop", "searches", "2026-08"
    )


# -- the close step's arguments ----------------------------------------------------------------


def test_close_step_layout() -> None:
    step = CloseStep(
        "a1",
        (Freeze("searches", "2026-07", "c", 12, "sid", b'{"t":1}', "searches:2026-07"),),
        (("searches", "2026-06", 3),),
        (LadderWrites("search", "2026-06", (TierWrite("2026-07", b"{}", "tid", b"{}"),)),),
        expire_at_s=99,
        now_ms=7,
        closed_through_ms=1_000,
    )
    key, payload = encode_close(step)
    assert key == "mtr:{a1}:p"
    assert orjson.loads(payload) == [
        "mtr:{a1}:",
        99,
        7,
        [["searches", "2026-07", "c", 12, "sid", '{"t":1}', "searches:2026-07"]],
        [["searches", "2026-06", 3]],
        [["search", "2026-06", [["2026-07", "{}", "tid", "{}"]]]],
        1_000,
    ]
    outcome = decode_close([1, 4, 1, 1, 0, b"rollup moved"])
    assert (outcome.status, outcome.outbox_length, outcome.detail) == (
        CloseStatus.MISMATCH,
        4,
        "rollup moved",
    )


# -- month shadows of ladder gauges ------------------------------------------------------------


def shadow_mapper() -> GaugeMonths:
    d = Directory()
    d.put_plan(PLAN)
    d.put_account(account_from_json({"id": "a1", "plan": "close-plan"}))
    inner = PlanMapper(d, MapperLimits(grace_ms=HOUR))
    return GaugeMonths(inner, d, grace_ms=HOUR, retention_ms=400 * 86_400_000)


def raw(event_type: str, time: str, **data: object) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"{event_type}-{time}",
            "source": "t",
            "type": event_type,
            "subject": "a1",
            "time": time,
            "data": data,
        }
    )


def test_a_ladder_gauge_change_also_goes_to_its_month_shadow() -> None:
    mapper = shadow_mapper()
    now = ms("2026-11-23T00:00:00Z")
    mapped = mapper.map(
        raw("contact.added", "2026-07-10T00:00:00Z", contact="c1", origin="import"),
        now_ms=now,
        watermark_ms=ms("2026-07-10T00:00:00Z"),
    )
    shadow = gauge_month_meter("customers", "2026-07")
    got = {(c.meter, c.period, c.member, c.present) for c in mapped.contributions}
    assert got == {
        ("customers", "", "c1", True),
        (shadow, "2026-07", "+c1", True),
        (shadow, "2026-07", "-c1", False),
    }
    rule = mapped.rules[(shadow, "2026-07")]
    assert rule.period_end_ms == month("2026-07")
    assert rule.limit is None
    removed = mapper.map(
        raw("contact.deleted", "2026-07-11T00:00:00Z", contact="c1"),
        now_ms=now,
        watermark_ms=ms("2026-07-11T00:00:00Z"),
    )
    assert {(c.member, c.present) for c in removed.contributions if c.meter == shadow} == {
        ("+c1", False),
        ("-c1", True),
    }


def test_a_late_gauge_change_goes_to_the_oldest_open_month() -> None:
    mapper = shadow_mapper()
    watermark = ms("2026-08-01T01:00:00Z")  # July closed (end + 1 h grace)
    mapped = mapper.map(
        raw("contact.added", "2026-07-20T00:00:00Z", contact="c1", origin="import"),
        now_ms=ms("2026-11-23T00:00:00Z"),
        watermark_ms=watermark,
    )
    assert {c.meter for c in mapped.contributions} == {
        "customers",
        gauge_month_meter("customers", "2026-08"),
    }
    inside = mapper.map(
        raw("contact.added", "2026-07-20T00:00:00Z", contact="c2", origin="import"),
        now_ms=ms("2026-11-23T00:00:00Z"),
        watermark_ms=watermark - 1,  # still inside the grace: July
    )
    assert gauge_month_meter("customers", "2026-07") in {c.meter for c in inside.contributions}


def test_other_events_pass_through_untouched() -> None:
    mapper = shadow_mapper()
    mapped = mapper.map(
        raw("search.viewed", "2026-07-10T00:00:00Z", surface="page"),
        now_ms=ms("2026-11-23T00:00:00Z"),
        watermark_ms=0,
    )
    assert [c.meter for c in mapped.contributions] == ["searches"]
