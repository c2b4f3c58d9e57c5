"""Periods: keys, timezones, DST, month-end and leap-day anchors, and tiling of time."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.errors import PeriodError
from metering.core.periods import (
    Period,
    PeriodKind,
    clear_caches,
    next_period,
    period_of,
    previous_period,
)
from metering.core.rfc3339 import parse_ms


def at(kind: PeriodKind, text: str, tz: str = "UTC", anchor: date | None = None) -> Period:
    return period_of(kind, parse_ms(text), tz, anchor)


def local_ms(tz: str, year: int, month: int, day: int, hour: int = 0) -> int:
    moment = datetime(year, month, day, hour, tzinfo=zoneinfo.ZoneInfo(tz))
    return int(moment.timestamp() * 1000)


def test_keys() -> None:
    t = "2026-11-23T10:00:00Z"
    assert at(PeriodKind.DAY, t).key == "d2026-11-23"
    assert at(PeriodKind.CALENDAR_MONTH, t).key == "2026-11"
    assert at(PeriodKind.CALENDAR_YEAR, t).key == "2026"
    assert at(PeriodKind.BILLING_MONTH, t, anchor=date(2025, 1, 31)).key == "b2026-10-31"
    assert at(PeriodKind.BILLING_YEAR, t, anchor=date(2025, 3, 15)).key == "y2026-03-15"


def test_calendar_month_in_the_account_timezone() -> None:
    tz = "Europe/Brussels"
    november = at(PeriodKind.CALENDAR_MONTH, "2026-11-15T12:00:00Z", tz)
    assert november.start_ms == local_ms(tz, 2026, 11, 1)
    assert november.end_ms == local_ms(tz, 2026, 12, 1)
    assert at(PeriodKind.CALENDAR_MONTH, "2026-11-30T23:00:00Z", tz).key == "2026-12"
    assert at(PeriodKind.CALENDAR_MONTH, "2026-11-30T22:59:59.999Z", tz).key == "2026-11"


def test_month_across_dst_change_is_shorter_or_longer_by_an_hour() -> None:
    tz = "Europe/Brussels"
    october = at(PeriodKind.CALENDAR_MONTH, "2026-10-15T00:00:00Z", tz)
    assert october.end_ms - october.start_ms == (31 * 24 + 1) * 3_600_000
    march = at(PeriodKind.CALENDAR_MONTH, "2026-03-15T00:00:00Z", tz)
    assert march.end_ms - march.start_ms == (31 * 24 - 1) * 3_600_000


def test_day_when_dst_skips_midnight_starts_when_the_day_starts() -> None:
    # America/Santiago: clocks go from 2026-09-06 00:00 to 01:00 (no local midnight)
    tz = "America/Santiago"
    day = at(PeriodKind.DAY, "2026-09-06T12:00:00Z", tz)
    assert day.key == "d2026-09-06"
    assert day.start_ms == parse_ms("2026-09-06T04:00:00Z")  # 01:00 -03, the day's first instant
    before = previous_period(PeriodKind.DAY, day, tz)
    assert before.key == "d2026-09-05"
    assert before.end_ms == day.start_ms
    assert day.end_ms - day.start_ms == 23 * 3_600_000  # one hour skipped


def test_a_skipped_day_has_no_period() -> None:
    # Pacific/Apia skipped 2011-12-30 entirely
    tz = "Pacific/Apia"
    dec29 = at(PeriodKind.DAY, "2011-12-30T09:00:00Z", tz)
    assert dec29.key == "d2011-12-29"
    following = next_period(PeriodKind.DAY, dec29, tz)
    assert following.key == "d2011-12-31"
    assert following.start_ms == dec29.end_ms


@pytest.mark.parametrize(
    ("anchor", "starts"),
    [
        (date(2026, 1, 31), ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31"]),
        (date(2028, 1, 31), ["2028-01-31", "2028-02-29", "2028-03-31"]),
        (date(2026, 1, 15), ["2026-01-15", "2026-02-15", "2026-03-15"]),
        (date(2026, 1, 30), ["2026-01-30", "2026-02-28", "2026-03-30"]),
    ],
)
def test_billing_months_from_a_month_end_anchor(anchor: date, starts: list[str]) -> None:
    tz = "Europe/Amsterdam"
    period = period_of(
        PeriodKind.BILLING_MONTH,
        local_ms(tz, anchor.year, anchor.month, anchor.day, 12),
        tz,
        anchor,
    )
    keys = []
    for _ in starts:
        keys.append(period.key)
        start = date.fromisoformat(period.key[1:])
        assert period.start_ms == local_ms(tz, start.year, start.month, start.day)
        period = next_period(PeriodKind.BILLING_MONTH, period, tz, anchor)
    assert keys == ["b" + s for s in starts]


def test_billing_year_from_a_leap_day() -> None:
    anchor = date(2024, 2, 29)
    keys = []
    period = at(PeriodKind.BILLING_YEAR, "2024-03-01T00:00:00Z", anchor=anchor)
    for _ in range(5):
        keys.append(period.key)
        period = next_period(PeriodKind.BILLING_YEAR, period, "UTC", anchor)
    assert keys == ["y2024-02-29", "y2025-02-28", "y2026-02-28", "y2027-02-28", "y2028-02-29"]


def test_times_before_the_anchor_belong_to_earlier_periods() -> None:
    anchor = date(2026, 3, 15)
    assert at(PeriodKind.BILLING_YEAR, "2026-03-14T23:59:59Z", anchor=anchor).key == "y2025-03-15"
    assert at(PeriodKind.BILLING_MONTH, "2026-03-14T23:59:59Z", anchor=anchor).key == "b2026-02-15"


def test_next_and_previous_are_inverse() -> None:
    tz = "Australia/Sydney"
    period = at(PeriodKind.CALENDAR_MONTH, "2026-04-05T00:00:00Z", tz)
    assert (
        previous_period(
            PeriodKind.CALENDAR_MONTH, next_period(PeriodKind.CALENDAR_MONTH, period, tz), tz
        )
        == period
    )


def test_errors() -> None:
    with pytest.raises(PeriodError, match="contract date"):
        at(PeriodKind.BILLING_MONTH, "2026-01-01T00:00:00Z")
    with pytest.raises(PeriodError, match="unknown timezone"):
        at(PeriodKind.DAY, "2026-01-01T00:00:00Z", "Mars/Olympus")
    with pytest.raises(PeriodError, match="unknown timezone"):
        at(PeriodKind.DAY, "2026-01-01T00:00:00Z", "../etc/passwd")


def test_cached_answers_equal_fresh_ones() -> None:
    t = parse_ms("2026-11-23T10:00:00Z")
    first = period_of(PeriodKind.CALENDAR_MONTH, t, "Asia/Tokyo")
    assert period_of(PeriodKind.CALENDAR_MONTH, t + 1, "Asia/Tokyo") is first
    clear_caches()
    assert period_of(PeriodKind.CALENDAR_MONTH, t, "Asia/Tokyo") == first


ZONES = sorted(zoneinfo.available_timezones())
ANCHORS = st.sampled_from(
    [date(2024, 1, 31), date(2024, 2, 29), date(2023, 3, 31), date(2025, 12, 31), date(2026, 6, 15)]
) | st.dates(min_value=date(1990, 1, 1), max_value=date(2040, 12, 31))
T_MIN = int(datetime(1980, 1, 1, tzinfo=UTC).timestamp() * 1000)
T_MAX = int(datetime(2060, 1, 1, tzinfo=UTC).timestamp() * 1000)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(PeriodKind)),
    st.sampled_from(ZONES),
    ANCHORS,
    st.integers(T_MIN, T_MAX),
    st.integers(1, 3),
)
def test_periods_tile_time(
    kind: PeriodKind, tz: str, anchor: date, time_ms: int, steps: int
) -> None:
    period = period_of(kind, time_ms, tz, anchor)
    assert period.start_ms <= time_ms < period.end_ms
    # the instants around both boundaries belong to this period or to its neighbours
    assert period_of(kind, period.start_ms, tz, anchor) == period
    assert period_of(kind, period.end_ms - 1, tz, anchor) == period
    walker = period
    for _ in range(steps):
        following = next_period(kind, walker, tz, anchor)
        assert following.start_ms == walker.end_ms  # no gap, no overlap
        assert following.key > walker.key  # keys sort in time order
        assert previous_period(kind, following, tz, anchor) == walker
        walker = following
    before = previous_period(kind, period, tz, anchor)
    assert before.end_ms == period.start_ms
    assert before.key < period.key


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(ZONES), st.integers(T_MIN, T_MAX))
def test_calendar_month_key_is_the_local_month(tz: str, time_ms: int) -> None:
    local = datetime.fromtimestamp(time_ms / 1000, zoneinfo.ZoneInfo(tz))
    period = period_of(PeriodKind.CALENDAR_MONTH, time_ms, tz)
    local_start = datetime.fromtimestamp(period.start_ms / 1000, zoneinfo.ZoneInfo(tz))
    assert period.key == f"{local.year:04d}-{local.month:02d}" or local_start.day == 1
