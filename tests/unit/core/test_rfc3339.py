"""RFC 3339 parsing into epoch milliseconds: fast path, general path, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.rfc3339 import format_ms, parse_ms

BASE = int(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:00:00Z", BASE),
        ("2026-11-23T10:00:00.250Z", BASE + 250),
        ("2026-11-23T10:00:00.2Z", BASE + 200),
        ("2026-11-23T10:00:00.123456789Z", BASE + 123),  # truncated, not rounded
        ("2026-11-23T10:00:00.9999Z", BASE + 999),
        ("2026-11-23t10:00:00z", BASE),
        ("2026-11-23T11:30:00+01:30", BASE),
        ("2026-11-23T05:00:00-05:00", BASE),
        ("2026-11-23T10:00:00-00:00", BASE),
        ("2026-11-24T09:59:00+23:59", BASE),
        ("1970-01-01T00:00:00Z", 0),
        ("2024-02-29T00:00:00Z", int(datetime(2024, 2, 29, tzinfo=UTC).timestamp() * 1000)),
    ],
)
def test_accepted_forms(text: str, expected: int) -> None:
    assert parse_ms(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-11-23",
        "2026-11-23T10:00:00",  # no offset: a naive time would shift periods
        "2026-11-23 10:00:00Z",
        "20261123T100000Z",
        "2026-11-23T10:00Z",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:60:00Z",
        "2026-11-23T10:00:60Z",  # leap seconds are refused
        "2026-11-23T10:00:00+24:00",
        "2026-11-23T10:00:00+01:60",
        "2026-11-23T10:00:00.Z",
        "2026-11-23T10:00:00.12aZ",
        "\uff12\uff10\uff12\uff16-11-23T10:00:00Z",  # non-ASCII digits
        "2026-11-23T10:00:00.\u0661\u0662\u0663Z",
        "2026-11-23T1\u0660:00:00Z",
    ],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_ms(text)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31)),
    st.integers(-23 * 60, 23 * 60),
    st.sampled_from(["", ".5", ".123", ".123456"]),
)
def test_agrees_with_datetime(moment: datetime, offset_minutes: int, fraction: str) -> None:
    moment = moment.replace(microsecond=0)
    tz = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=tz)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + f"{sign}{hours:02d}:{minutes:02d}"
    millis = int((fraction[1:] + "000")[:3]) if fraction else 0
    expected = (local - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1) + millis
    assert parse_ms(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 253402300799999))
def test_format_round_trips(epoch_ms: int) -> None:
    text = format_ms(epoch_ms)
    assert text.endswith("Z")
    assert parse_ms(text) == epoch_ms
