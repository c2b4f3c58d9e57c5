"""Tier ladders ("up to N") and placement by the average of the last closed months (Clerk.io).

Clerk.io puts an account in the smallest "up to N" tier that holds its usage, judged on the
average of the last three months so that "should you temporarily go over your tier, you will
not be billed extra". The average is an exact `Fraction` (20,000.333... is compared with 25,000
exactly, never through a float), and only closed months count: the running month is not over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

DEFAULT_WINDOW = 3


@dataclass(frozen=True, slots=True)
class Ladder:
    """Tiers of one usage kind: the account sits in the first tier whose bound holds it."""

    name: str
    """Usage kind (`searches`, `recommendation_views`, ...)."""
    meter: str
    """Meter whose closed monthly totals place the account."""
    up_to: tuple[int, ...]
    """Tier bounds, strictly increasing: "up to 25,000" is 25000."""
    window: int = DEFAULT_WINDOW
    """Number of closed months averaged."""


@dataclass(frozen=True, slots=True)
class Placement:
    ladder: str
    up_to: int | None
    """Bound of the tier ("up to 25,000"); None when the average is above every tier."""
    average: Fraction
    months_used: int
    complete: bool
    """False while fewer than `window` closed months exist (placement is provisional)."""


def place(ladder: Ladder, closed_monthly_totals: Sequence[int]) -> Placement:
    """Place by the average of the last `ladder.window` closed monthly totals (oldest first)."""
    recent = closed_monthly_totals[-ladder.window :] if ladder.window else ()
    average = Fraction(sum(recent), len(recent)) if recent else Fraction(0)
    bound = next((up_to for up_to in ladder.up_to if average <= up_to), None)
    return Placement(
        ladder=ladder.name,
        up_to=bound,
        average=average,
        months_used=len(recent),
        complete=len(recent) >= ladder.window,
    )


@dataclass(frozen=True, slots=True)
class PlacedMonth:
    """One closed month behind a placement: its period key and total."""

    period: str
    total: int


@dataclass(frozen=True, slots=True)
class TierMismatch:
    """An account whose complete 3-month placement differs from the tier it pays for.

    Clerk.io: "if you are on the wrong tier, your Customer Success Manager will reach out"."""

    account: str
    ladder: str
    meter: str
    paid_up_to: int
    placed_up_to: int | None
    """None: above every tier of the ladder."""
    average: Fraction
    as_of: str
    """The last closed month of the placement."""
    months: tuple[PlacedMonth, ...]
    """The months averaged, oldest first."""

    @property
    def direction(self) -> str:
        """`up` when usage belongs in a bigger tier than the one paid for, else `down`."""
        if self.placed_up_to is None or self.placed_up_to > self.paid_up_to:
            return "up"
        return "down"


def tier_mismatches(
    account: str,
    paid_tiers: Mapping[str, int],
    ladders: Sequence[Ladder],
    placements: Mapping[str, Mapping[str, object]],
) -> list[TierMismatch]:
    """The ladders on which `account`'s last complete placement is not the tier it pays for.

    `placements` are the closer's last decisions per ladder (`rollups.placement_record`: `as_of`,
    `up_to`, `average` as exact text, `complete`, `months`). A ladder the account pays nothing
    for, or whose placement is still provisional (fewer than `window` closed months), is not a
    mismatch: there is nothing, or not yet enough, to compare."""
    found = []
    for ladder in ladders:
        paid = paid_tiers.get(ladder.name)
        record = placements.get(ladder.name)
        if paid is None or record is None or record.get("complete") is not True:
            continue
        up_to = record.get("up_to")
        placed = up_to if isinstance(up_to, int) and not isinstance(up_to, bool) else None
        if placed == paid:
            continue
        raw_months = record.get("months")
        months = tuple(
            PlacedMonth(str(m["period"]), int(m["total"]))
            for m in (raw_months if isinstance(raw_months, list) else ())
            if isinstance(m, dict)
        )
        found.append(
            TierMismatch(
                account=account,
                ladder=ladder.name,
                meter=ladder.meter,
                paid_up_to=paid,
                placed_up_to=placed,
                average=Fraction(str(record.get("average", "0"))),
                as_of=str(record.get("as_of", "")),
                months=months,
            )
        )
    return found
