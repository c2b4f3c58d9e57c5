"""Thresholds in integer arithmetic, crossing ids, and the status/projection of a meter."""

from __future__ import annotations

import uuid
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.periods import Period
from metering.core.status import State, balance_state, colour_of, status
from metering.core.thresholds import (
    AT_RISK,
    CROSSING_NAMESPACE,
    DEFAULT_THRESHOLDS,
    EXCEEDED,
    Colour,
    Threshold,
    crossed,
    crossing_id,
    crossing_scope,
    next_reminder_ms,
    reached,
    reminders_due,
)


def test_80_percent_is_exact() -> None:
    assert AT_RISK.reached(8_000, 10_000)
    assert not AT_RISK.reached(7_999, 10_000)
    assert AT_RISK.reached(4, 5)
    assert not AT_RISK.reached(3, 4)  # 75%
    assert AT_RISK.reached(1, 1)


def test_strict_means_exceeds() -> None:
    assert not EXCEEDED.reached(10_000, 10_000)
    assert EXCEEDED.reached(10_001, 10_000)
    reached_at = Threshold("reached", Fraction(1), colour=Colour.RED)
    assert reached_at.reached(10_000, 10_000)


def test_nothing_used_reaches_nothing_and_a_zero_limit_is_exceeded_by_the_first_use() -> None:
    assert reached(0, 0, DEFAULT_THRESHOLDS) == []
    assert reached(1, 0, DEFAULT_THRESHOLDS) == [AT_RISK, EXCEEDED]


def test_crossed_reports_only_new_thresholds() -> None:
    assert crossed(0, 7_999, 10_000, DEFAULT_THRESHOLDS) == []
    assert crossed(7_999, 8_000, 10_000, DEFAULT_THRESHOLDS) == [AT_RISK]
    assert crossed(8_000, 10_001, 10_000, DEFAULT_THRESHOLDS) == [EXCEEDED]
    assert crossed(0, 20_000, 10_000, DEFAULT_THRESHOLDS) == [AT_RISK, EXCEEDED]
    assert crossed(10_001, 10_002, 10_000, DEFAULT_THRESHOLDS) == []
    assert crossed(9_000, 100, 10_000, DEFAULT_THRESHOLDS) == []  # going down crosses nothing


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(1, 10**9), st.integers(1, 200))
def test_integer_comparison_matches_exact_fraction(
    used: int, limit: int, num: int, den: int
) -> None:
    ratio = Fraction(num, den)
    threshold = Threshold("t", ratio)
    assert threshold.reached(used, limit) == (used > 0 and Fraction(used) >= ratio * limit)
    strict = Threshold("t", ratio, strict=True)
    assert strict.reached(used, limit) == (used > 0 and Fraction(used) > ratio * limit)


def test_crossing_ids_are_deterministic_and_distinct() -> None:
    a = crossing_id("acct", "emails", "2026-11", "at_risk")
    assert a == crossing_id("acct", "emails", "2026-11", "at_risk")
    assert uuid.UUID(a).version == 5
    others = {
        crossing_id("acct", "emails", "2026-12", "at_risk"),
        crossing_id("acct", "emails", "2026-11", "exceeded"),
        crossing_id("acct2", "emails", "2026-11", "at_risk"),
        crossing_id("acct", "emails2", "2026-11", "at_risk"),
        crossing_id("acct", "emails", "2026-1", "1at_risk"),
    }
    assert a not in others
    assert len(others) == 5


def test_crossing_scope() -> None:
    assert crossing_scope("2026-11", 100) == "2026-11"
    assert crossing_scope("", 100) == "L100"


def test_reminders() -> None:
    assert reminders_due(0, 10, 9) == 0
    assert reminders_due(0, 10, 10) == 1
    assert reminders_due(100, 10, 50) == 0  # clock before the crossing
    assert next_reminder_ms(0, 10, 25) == 30
    with pytest.raises(ValueError, match="positive"):
        reminders_due(0, 0, 1)


def test_status_without_limit_is_green() -> None:
    s = status(123, None, DEFAULT_THRESHOLDS)
    assert (s.colour, s.ratio, s.remaining, s.reached) == (Colour.GREEN, None, None, ())
    assert colour_of(10**9, None, DEFAULT_THRESHOLDS) is Colour.GREEN


def test_status_numbers() -> None:
    s = status(8_500, 10_000, DEFAULT_THRESHOLDS)
    assert s.ratio == Fraction(17, 20)
    assert s.remaining == 1_500
    assert s.colour is Colour.YELLOW
    over = status(12_000, 10_000, DEFAULT_THRESHOLDS)
    assert (over.remaining, over.colour) == (0, Colour.RED)
    assert status(0, 0, DEFAULT_THRESHOLDS).ratio is None


def test_projection_at_the_current_pace() -> None:
    day = 86_400_000
    november = Period(0, 30 * day, "2026-11")
    s = status(3_000, 10_000, DEFAULT_THRESHOLDS, period=november, now_ms=10 * day)
    assert s.projected == 9_000  # 300 a day for 30 days
    assert s.limit_at_ms is None  # not reached this period
    fast = status(5_000, 10_000, DEFAULT_THRESHOLDS, period=november, now_ms=10 * day)
    assert fast.projected == 15_000
    assert fast.limit_at_ms == 20 * day  # 500 a day reaches 10,000 on day 20
    odd = status(3, 10, DEFAULT_THRESHOLDS, period=Period(0, 100, "p"), now_ms=7)
    assert odd.limit_at_ms == 24  # ceil(10 * 7 / 3)
    assert odd.projected == 42  # floor(3 * 100 / 7)
    assert status(0, 10, DEFAULT_THRESHOLDS, period=november, now_ms=day).limit_at_ms is None
    at_start = status(0, 10, DEFAULT_THRESHOLDS, period=november, now_ms=0)
    assert at_start.projected is None
    after_end = status(10, 20, DEFAULT_THRESHOLDS, period=november, now_ms=40 * day)
    assert after_end.projected == 10


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=20), st.text(max_size=12), st.text(max_size=12))
def test_crossing_ids_are_the_uuid5_of_their_coordinates(
    account: str, meter: str, scope: str, threshold: str
) -> None:
    """The hand-rolled uuid5 (no UUID object per id) is exactly `uuid.uuid5`."""
    name = f"{account}\x1f{meter}\x1f{scope}\x1f{threshold}"
    try:
        want = str(uuid.uuid5(CROSSING_NAMESPACE, name))
    except UnicodeEncodeError:  # lone surrogates: both refuse
        return
    assert crossing_id(account, meter, scope, threshold) == want


def test_the_status_word_says_over_only_above_the_limit() -> None:
    # Actito's defaults: 10,000 of 10,000 is still yellow, and the word says "at limit".
    assert status(10_000, 10_000, DEFAULT_THRESHOLDS).state is State.AT_LIMIT
    assert status(10_001, 10_000, DEFAULT_THRESHOLDS).state is State.OVER
    assert status(8_000, 10_000, DEFAULT_THRESHOLDS).state is State.AT_RISK
    assert status(5, None, DEFAULT_THRESHOLDS).state is State.OK
    assert balance_state(0) == (Colour.RED, State.NO_CREDITS)
    assert balance_state(3) == (Colour.GREEN, State.OK)
