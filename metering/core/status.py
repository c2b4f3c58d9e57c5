"""How much is used: colour, ratio, remaining, and where the current pace leads.

The colour comes from the meter's thresholds (each has a colour), so it is the same integer
comparison that decides crossings: with Actito's defaults, green below 80%, yellow from 80%
(8,000 of 10,000 exactly), red only when usage *exceeds* the limit (10,000 of 10,000 is still
yellow, 10,001 is red). A plan whose "reached" threshold is not strict turns red at 100%.

The status word (`State`) is a fact about the numbers, not the plan's colours: "over" only when
usage is strictly above the limit, "at limit" when it equals it (Act-On counts "up to" its
limit: 10,000 of 10,000 is red, at its limit, and not over it), "at risk" while a threshold is
reached below the limit, "ok" otherwise. The CLI, the API (`state`) and the dashboard all show
this word, so they cannot disagree.

The projection assumes the pace so far in the period continues to its end (integer maths,
rounded down); the date the limit would be reached is rounded up to the millisecond.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from metering.core.periods import Period
from metering.core.thresholds import Colour, Threshold

_RANK = {Colour.GREEN: 0, Colour.YELLOW: 1, Colour.RED: 2}


class State(StrEnum):
    """The status word of a meter (API `state`; the CLI prints it with a space for `_`)."""

    OK = "ok"
    AT_RISK = "at_risk"
    AT_LIMIT = "at_limit"
    OVER = "over"
    NO_CREDITS = "no_credits"
    """A prepaid balance with nothing left (balances have no limit)."""


def state_of(used: int, limit: int | None, colour: Colour) -> State:
    """The word for `used` of `limit` at `colour`: over only strictly above the limit."""
    if limit is not None and used > limit:
        return State.OVER
    if limit is not None and used == limit:
        return State.AT_LIMIT
    return State.OK if colour is Colour.GREEN else State.AT_RISK


def balance_state(balance: int) -> tuple[Colour, State]:
    """A prepaid balance: red and "no credits" when nothing is left, else green and ok."""
    return (Colour.GREEN, State.OK) if balance > 0 else (Colour.RED, State.NO_CREDITS)


@dataclass(frozen=True, slots=True)
class Status:
    used: int
    limit: int | None
    colour: Colour
    state: State
    reached: tuple[str, ...]
    """Names of the thresholds reached, in plan order."""
    ratio: Fraction | None
    """used / limit (None without a limit, or with a limit of 0)."""
    remaining: int | None
    """How much is left before the limit (0 when at or above it; None without a limit)."""
    projected: int | None = None
    """Usage at the end of the period at the current pace (None when not projectable)."""
    limit_at_ms: int | None = None
    """When the limit would be reached at the current pace, if within the period."""


def colour_of(used: int, limit: int | None, thresholds: Iterable[Threshold]) -> Colour:
    colour = Colour.GREEN
    if limit is None:
        return colour
    for threshold in thresholds:
        if threshold.reached(used, limit) and _RANK[threshold.colour] > _RANK[colour]:
            colour = threshold.colour
    return colour


def status(
    used: int,
    limit: int | None,
    thresholds: Iterable[Threshold],
    *,
    period: Period | None = None,
    now_ms: int | None = None,
) -> Status:
    """Status of a meter at `used` of `limit`; pass `period` and `now_ms` for a projection."""
    thresholds = tuple(thresholds)
    reached = () if limit is None else tuple(t.name for t in thresholds if t.reached(used, limit))
    projected = limit_at = None
    if period is not None and now_ms is not None and now_ms > period.start_ms:
        elapsed = min(now_ms, period.end_ms) - period.start_ms
        length = period.end_ms - period.start_ms
        projected = used * length // elapsed
        if limit is not None and 0 < used < limit:
            at = period.start_ms - (-limit * elapsed // used)  # ceiling division
            limit_at = at if at < period.end_ms else None
    colour = colour_of(used, limit, thresholds)
    return Status(
        used=used,
        limit=limit,
        colour=colour,
        state=state_of(used, limit, colour),
        reached=reached,
        ratio=Fraction(used, limit) if limit else None,
        remaining=None if limit is None else max(0, limit - used),
        projected=projected,
        limit_at_ms=limit_at,
    )
