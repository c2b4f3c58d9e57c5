"""Tier ladders ("up to N") and placement by the average of the last closed months (Clerk.io).

Clerk.io puts an account in the smallest "up to N" tier that holds its usage, judged on the
average of the last three months so that "should you temporarily go over your tier, you will
not be billed extra". The average is an exact `Fraction` (20,000.333... is compared with 25,000
exactly, never through a float), and only closed months count: the running month is not over.
"""

from __future__ import annotations

from collections.abc import Sequence
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
