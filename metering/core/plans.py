"""Plans: which meters an account has, what feeds them, their limits, thresholds and rules.

A plan is data, written by people in TOML (see `metering.core.plan_loading` and docs/plans.md). This
module holds only the validated, immutable model. A `Plan` precomputes, per event type, the
meters the type may feed (`Plan.routes`), so mapping an event to its meters on the hot path is
one dictionary look-up plus the meters' field filters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction

from metering.core.deltas import Aggregation
from metering.core.enforcement import ADVISORY, EnforcementPolicy
from metering.core.errors import UnknownMeter
from metering.core.events import EventType, UsageEvent
from metering.core.periods import PeriodKind
from metering.core.thresholds import Threshold
from metering.core.tiers import Ladder


class Effect(StrEnum):
    """What a matching event does to a gauge or a balance."""

    ADD = "add"
    """Gauge: the member joins (contact.added). Balance: + quantity (credits bought)."""
    REMOVE = "remove"
    """Gauge: the member leaves (contact.deleted). Balance: - quantity (credits used)."""


@dataclass(frozen=True, slots=True)
class EventMatch:
    """An event type that feeds a meter, optionally only when data fields have given values."""

    type: EventType
    where: tuple[tuple[str, str | bool], ...] = ()
    """(field, value) pairs that must all hold, e.g. (("kind", "marketing"),)."""
    effect: Effect = Effect.ADD

    def accepts(self, event: UsageEvent) -> bool:
        return all(getattr(event, name) == value for name, value in self.where)


@dataclass(frozen=True, slots=True)
class FixedLimit:
    amount: int


@dataclass(frozen=True, slots=True)
class DerivedLimit:
    """`factor` times another meter's limit, rounded down.

    Actito: maximum interactions = maximum profiles x allowed average interactions per profile.
    """

    meter: str
    factor: Fraction


Limit = FixedLimit | DerivedLimit


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter of a plan."""

    name: str
    """Unique in the plan; `[a-z][a-z0-9_]*` (it is part of Redis keys)."""
    aggregation: Aggregation
    events: tuple[EventMatch, ...]
    period: PeriodKind | None = None
    """Window of count/sum/distinct meters; None for gauges and balances (not windowed)."""
    limit: Limit | None = None
    """None: no limit (tracked only, or placed in tiers)."""
    thresholds: tuple[Threshold, ...] = ()
    enforcement: EnforcementPolicy = ADVISORY
    member_field: str = "contact"
    """Distinct and gauge meters: the event attribute naming the member."""
    exclude_suppressed: bool = False
    """Distinct meters: members suppressed before the period started never count (Act-On)."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    meter: MeterSpec
    match: EventMatch


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    meters: tuple[MeterSpec, ...]
    timezone: str = "UTC"
    """Timezone of accounts that do not set their own."""
    ladders: tuple[Ladder, ...] = ()
    description: str = ""
    _routes: dict[EventType, tuple[Route, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _by_name: dict[str, MeterSpec] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        routes: dict[EventType, list[Route]] = {}
        for meter in self.meters:
            for match in meter.events:
                routes.setdefault(match.type, []).append(Route(meter, match))
        object.__setattr__(self, "_routes", {k: tuple(v) for k, v in routes.items()})
        object.__setattr__(self, "_by_name", {meter.name: meter for meter in self.meters})

    def routes(self, event_type: EventType) -> tuple[Route, ...]:
        """Every (meter, match) an event of this type may feed, in plan order."""
        return self._routes.get(event_type, ())

    def meter(self, name: str) -> MeterSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownMeter(self.id, name) from None

    def has_meter(self, name: str) -> bool:
        return name in self._by_name

    def ladder(self, name: str) -> Ladder:
        """The tier ladder `name` (`UnknownMeter` when the plan has none by that name)."""
        for ladder in self.ladders:
            if ladder.name == name:
                return ladder
        raise UnknownMeter(self.id, name)
