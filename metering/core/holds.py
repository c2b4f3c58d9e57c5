"""Admission holds (authorize, then capture): the rule and a reference model. Pure.

Admitting N units of a counter or a balance places a *hold* in the same atomic step as the
check, so that concurrent requests can never together take the same last units:

- a counter (count/sum meter with a limit): `used + held + N <= limit`;
- a prepaid balance: `balance - held >= N`.

The processor *captures* a hold when it applies an event carrying its id: the event's units
replace held ones (the hold shrinks by what the event used there, never below zero), in the
atomic step that counts the event, so used + held never counts the same unit twice. A hold
nobody captures expires (`METERING_HOLD_TTL_S`) and frees what it still holds; a release frees
it early; a captured event after expiry is simply counted.

`state/lua/holds.lua` and the capture in `state/lua/apply.lua` implement this; `HoldLedger` is the
reference the property test runs the same sequences against (tests/integration/test_holds.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class HoldKind(StrEnum):
    """What the hold is checked against (the letters are the script's)."""

    LIMIT = "c"
    """A count/sum meter: used + held + N <= limit."""
    BALANCE = "b"
    """A prepaid balance: balance - held >= N."""


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """One meter an admission holds units on: `per` units for each admitted item."""

    meter: str
    period: str
    kind: HoldKind
    limit: int | None
    """The effective limit (LIMIT kind; None: unlimited). Unused for balances."""
    per: int

    @property
    def slot(self) -> str:
        """`meter:period`, the name the store keeps the held total under."""
        return f"{self.meter}:{self.period}"


@dataclass(frozen=True, slots=True)
class HoldLevel:
    """A meter as the admission step saw it, before its own hold."""

    used: int
    """Counter: used in the period. Balance: the balance."""
    held: int
    """Units other live holds held."""


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """What one atomic admission step admitted and held."""

    admitted: int
    """Items admitted (a prefix of the request's items): `admitted * per` units are held per
    meter, under the hold id, until captured, released or expired."""
    levels: tuple[HoldLevel, ...]
    """One per request, in order."""


def items_fitting(
    kind: HoldKind, used: int, held: int, limit: int | None, *, per: int, n: int
) -> int:
    """How many of `n` items of `per` units fit (the same rule as `decide_use` and
    `decide_prepaid` for equal items, with held units taken as used)."""
    if per <= 0:
        return n
    if kind is HoldKind.LIMIT:
        if limit is None:
            return n
        room = limit - used - held
    else:
        room = used - held
    return max(0, min(n, room // per))


@dataclass
class _Hold:
    expires_ms: int
    units: dict[str, int]


@dataclass
class HoldLedger:
    """Reference model of one account's holds and usage (what the Lua scripts must agree with)."""

    used: dict[str, int] = field(default_factory=dict)
    """slot -> used (a balance's slot holds the balance)."""
    holds: dict[str, _Hold] = field(default_factory=dict)

    def held(self, slot: str, now_ms: int) -> int:
        """Units live holds hold on `slot` at `now_ms`."""
        return sum(
            h.units.get(slot, 0) for h in self.holds.values() if h.expires_ms > now_ms
        )

    def admit(
        self, hold: str, requests: list[HoldRequest], n: int, *, now_ms: int, expires_ms: int
    ) -> int:
        """Admit up to `n` items on every request's meter; hold what was admitted."""
        self._expire(now_ms)
        admitted = n
        for r in requests:
            level = self.used.get(r.slot, 0)
            fit = items_fitting(
                r.kind, level, self.held(r.slot, now_ms), r.limit, per=r.per, n=n
            )
            admitted = min(admitted, fit)
        units = {r.slot: admitted * r.per for r in requests if admitted * r.per > 0}
        if units:
            self.holds[hold] = _Hold(expires_ms, units)
        return admitted

    def capture(self, hold: str, slot: str, units: int, *, now_ms: int, balance: bool) -> None:
        """An event carrying `hold` used `units` on `slot`: it counts; the hold shrinks."""
        self.used[slot] = self.used.get(slot, 0) + (-units if balance else units)
        found = self.holds.get(hold)
        if found is None:
            return
        if found.expires_ms <= now_ms:
            del self.holds[hold]
            return
        left = found.units.get(slot, 0)
        if left:
            found.units[slot] = left - min(left, units)
            if not found.units[slot]:
                del found.units[slot]
        if not found.units:
            del self.holds[hold]

    def release(self, hold: str, *, now_ms: int) -> dict[str, int]:
        """Free what `hold` still holds (nothing when unknown, expired or captured)."""
        self._expire(now_ms)
        found = self.holds.pop(hold, None)
        return {} if found is None else dict(found.units)

    def _expire(self, now_ms: int) -> None:
        for hold in [h for h, v in self.holds.items() if v.expires_ms <= now_ms]:
            del self.holds[hold]
