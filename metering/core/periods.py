"""Billing and calendar periods in an account's timezone, with stable string keys.

A period is the half-open interval `[start_ms, end_ms)` of epoch milliseconds between two local
midnights of the account's IANA timezone. Its key names it in Redis keys and events:

| kind             | key            | starts at local midnight of                           |
|------------------|----------------|-------------------------------------------------------|
| `day`            | `d2026-11-23`  | every day                                             |
| `calendar_month` | `2026-11`      | the 1st of each month (Act-On: "resets on the 1st")   |
| `calendar_year`  | `2026`         | January 1st (Actito: "the start of the year")         |
| `billing_month`  | `b2026-01-31`  | the contract day each month, clamped to the month end |
| `billing_year`   | `y2026-01-31`  | the contract date each year (Actito "consumption since") |

Billing periods are counted from the anchor (contract date), not chained from the previous
period, so a contract on Jan 31 gives Jan 31, Feb 28 (29 in leap years), Mar 31, Apr 30, ...,
and a contract on Feb 29 gives Feb 28 in common years and Feb 29 in leap years.

Local midnight is resolved with zoneinfo's default (`fold=0`): when a DST change skips
midnight the period starts when the day really starts; when midnight repeats, at the first one.
A period is defined only by its two boundaries, so periods tile time without gaps or overlaps
even in zones that once skipped a whole day (Pacific/Apia, 2011-12-30 has no period).

The processor asks for the period of every event, so the last period returned per
(kind, timezone, anchor) is remembered and checked first (`start <= t < end`); boundaries are
memoised per (timezone, date).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from metering.core.errors import PeriodError

DAY_MS = 86_400_000
"""Milliseconds in a (UTC) day: the one definition every module uses."""


def expire_at_s(period_end_ms: int, retention_ms: int) -> int:
    """When a period's state may be dropped (epoch seconds, Redis EXPIREAT): its end plus the
    retention. The processor, the gauge-month shadows and admission all keep state this long."""
    return (period_end_ms + retention_ms) // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_LAST_MAX = 65_536


class PeriodKind(StrEnum):
    DAY = "day"
    CALENDAR_MONTH = "calendar_month"
    CALENDAR_YEAR = "calendar_year"
    BILLING_MONTH = "billing_month"
    BILLING_YEAR = "billing_year"

    @property
    def anchored(self) -> bool:
        """Billing periods need the account's contract date."""
        return self in (PeriodKind.BILLING_MONTH, PeriodKind.BILLING_YEAR)


@dataclass(frozen=True, slots=True)
class Period:
    """`[start_ms, end_ms)` in epoch milliseconds, named by `key`."""

    start_ms: int
    end_ms: int
    key: str

    def __contains__(self, time_ms: int) -> bool:
        return self.start_ms <= time_ms < self.end_ms


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; `PeriodError` when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PeriodError(f"unknown timezone {name!r}") from exc


def check_timezone(name: str) -> str:
    """Return `name` when it is a known IANA zone, else raise `PeriodError`."""
    zone(name)
    return name


@lru_cache(maxsize=65_536)
def _midnight_ms(tz: str, day: date) -> int:
    local = datetime(day.year, day.month, day.day, tzinfo=zone(tz))
    return (local - _EPOCH) // _MS


def _clamped(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _start_date(kind: PeriodKind, index: int, anchor: date | None) -> date:
    """First local day of period number `index` (numbering is per kind, see `_index`)."""
    if kind is PeriodKind.DAY:
        return date.fromordinal(index)
    if kind is PeriodKind.CALENDAR_MONTH:
        return date(index // 12, index % 12 + 1, 1)
    if kind is PeriodKind.CALENDAR_YEAR:
        return date(index, 1, 1)
    assert anchor is not None  # checked by period_of
    if kind is PeriodKind.BILLING_MONTH:
        year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + index, 12)
        return _clamped(year, month0 + 1, anchor.day)
    return _clamped(anchor.year + index, anchor.month, anchor.day)


def _index(kind: PeriodKind, day: date, anchor: date | None) -> int:
    """Number of the period whose local days include `day`."""
    if kind is PeriodKind.DAY:
        return day.toordinal()
    if kind is PeriodKind.CALENDAR_MONTH:
        return day.year * 12 + day.month - 1
    if kind is PeriodKind.CALENDAR_YEAR:
        return day.year
    assert anchor is not None  # checked by period_of
    if kind is PeriodKind.BILLING_MONTH:
        index = (day.year - anchor.year) * 12 + day.month - anchor.month
    else:
        index = day.year - anchor.year
    return index - 1 if day < _start_date(kind, index, anchor) else index


def _key(kind: PeriodKind, start: date) -> str:
    if kind is PeriodKind.CALENDAR_MONTH:
        return f"{start.year:04d}-{start.month:02d}"
    if kind is PeriodKind.CALENDAR_YEAR:
        return f"{start.year:04d}"
    prefix = {PeriodKind.DAY: "d", PeriodKind.BILLING_MONTH: "b", PeriodKind.BILLING_YEAR: "y"}
    return prefix[kind] + start.isoformat()


def _compute(kind: PeriodKind, time_ms: int, tz: str, anchor: date | None) -> Period:
    local_day = datetime.fromtimestamp(time_ms // 1000, zone(tz)).date()
    index = _index(kind, local_day, anchor)
    start = _midnight_ms(tz, _start_date(kind, index, anchor))
    end = _midnight_ms(tz, _start_date(kind, index + 1, anchor))
    # Local midnight inside a DST gap resolves after the day's real start; step across.
    while time_ms < start:
        index -= 1
        end, start = start, _midnight_ms(tz, _start_date(kind, index, anchor))
    while time_ms >= end:
        index += 1
        start, end = end, _midnight_ms(tz, _start_date(kind, index + 1, anchor))
    return Period(start, end, _key(kind, _start_date(kind, index, anchor)))


_last: dict[tuple[PeriodKind, str, date | None], Period] = {}


def period_of(kind: PeriodKind, time_ms: int, tz: str, anchor: date | None = None) -> Period:
    """The period of `kind` containing `time_ms` for an account in `tz` with contract `anchor`.

    `anchor` is required for billing kinds and ignored for calendar kinds.
    """
    if kind.anchored:
        if anchor is None:
            raise PeriodError(f"{kind.value} periods need a contract date (anchor)")
    else:
        anchor = None
    cache_key = (kind, tz, anchor)
    last = _last.get(cache_key)
    if last is not None and last.start_ms <= time_ms < last.end_ms:
        return last
    period = _compute(kind, time_ms, tz, anchor)
    if len(_last) >= _LAST_MAX:
        _last.clear()
    _last[cache_key] = period
    return period


def next_period(kind: PeriodKind, period: Period, tz: str, anchor: date | None = None) -> Period:
    """The period right after `period` (its start is `period.end_ms`)."""
    return period_of(kind, period.end_ms, tz, anchor)


def previous_period(
    kind: PeriodKind, period: Period, tz: str, anchor: date | None = None
) -> Period:
    """The period right before `period` (its end is `period.start_ms`)."""
    return period_of(kind, period.start_ms - 1, tz, anchor)


def clear_caches() -> None:
    """Forget memoised periods and boundaries (tests; after a tzdata update)."""
    _last.clear()
    _midnight_ms.cache_clear()
    zone.cache_clear()
