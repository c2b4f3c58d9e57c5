"""Pure shaping of what the API shows: usage per meter, plans, periods. No I/O here.

`meter_usage` is the one place that turns (account, plan, amount, last update, now) into the
numbers of the "My consumption" view, so the JSON API and the dashboard cannot disagree: the
limit includes the current period's temporary extension, the colour and projection come from
`metering.core.status`, and the period is computed in the account's timezone and contract anchor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metering.core.accounts import Account, base_limit, effective_limit, timezone_of
from metering.core.deltas import NO_PERIOD, Aggregation
from metering.core.periods import Period, period_of, previous_period
from metering.core.plans import DerivedLimit, FixedLimit, MeterSpec, Plan
from metering.core.rfc3339 import format_ms
from metering.core.status import balance_state, status
from metering.core.tiers import Placement


@dataclass(frozen=True, slots=True)
class MeterSlot:
    """Where a meter's current amount lives: its period key (NO_PERIOD for unwindowed)."""

    meter: MeterSpec
    period: Period | None

    @property
    def key(self) -> str:
        return NO_PERIOD if self.period is None else self.period.key


def current_slot(account: Account, plan: Plan, meter: MeterSpec, now_ms: int) -> MeterSlot:
    """The meter's current period in the account's timezone and contract anchor."""
    if meter.period is None:
        return MeterSlot(meter, None)
    tz = timezone_of(account, plan)
    return MeterSlot(meter, period_of(meter.period, now_ms, tz, account.contract_date))


def period_json(period: Period | None, kind: str | None) -> dict[str, Any] | None:
    if period is None:
        return None
    return {
        "key": period.key,
        "kind": kind,
        "start": format_ms(period.start_ms),
        "end": format_ms(period.end_ms),
    }


def meter_usage(
    account: Account,
    plan: Plan,
    slot: MeterSlot,
    used: int,
    *,
    last_update_ms: int | None,
    now_ms: int,
    held: int = 0,
) -> dict[str, Any]:
    """One meter of the usage view (see docs/api.md, "Usage"). `held`: units admission holds
    keep for usage not counted yet; shown beside `used`, never part of status, thresholds or
    projection (those count usage)."""
    meter = slot.meter
    key = slot.key
    balance = meter.aggregation is Aggregation.BALANCE
    limit = None if balance else effective_limit(account, plan, meter.name, key)
    base = None if balance else base_limit(account, plan, meter.name)
    extension = account.extensions.get((meter.name, key), 0) if limit is not None else 0
    st = status(used, limit, meter.thresholds, period=slot.period, now_ms=now_ms)
    colour, state = st.colour, st.state
    if balance:
        # A prepaid balance has no limit: it is red ("no credits") when nothing is left.
        colour, state = balance_state(used)
    projection = None
    if slot.period is not None and st.projected is not None:
        projection = {
            "used_at_period_end": st.projected,
            "limit_reached_at": None if st.limit_at_ms is None else format_ms(st.limit_at_ms),
        }
    return {
        "meter": meter.name,
        "description": meter.description,
        "aggregation": meter.aggregation.value,
        "enforcement": meter.enforcement.mode.value,
        "used": used,
        "held": held,
        "limit": limit,
        "base_limit": base,
        "extension": extension,
        "remaining": max(0, used) if balance else st.remaining,
        "ratio": None if st.ratio is None else float(st.ratio),
        "status": colour.value,
        "state": state.value,
        "thresholds_reached": list(st.reached),
        "period": period_json(slot.period, None if meter.period is None else meter.period.value),
        "last_update": None if last_update_ms is None else format_ms(last_update_ms),
        "projection": projection,
    }


def past_periods(
    account: Account, plan: Plan, meter: MeterSpec, now_ms: int, count: int
) -> list[Period]:
    """The current period and the `count - 1` before it, oldest first."""
    slot = current_slot(account, plan, meter, now_ms)
    assert slot.period is not None
    assert meter.period is not None
    tz = timezone_of(account, plan)
    periods = [slot.period]
    while len(periods) < count:
        periods.append(previous_period(meter.period, periods[-1], tz, account.contract_date))
    periods.reverse()
    return periods


def limit_json(meter: MeterSpec) -> int | dict[str, Any] | None:
    if isinstance(meter.limit, FixedLimit):
        return meter.limit.amount
    if isinstance(meter.limit, DerivedLimit):
        return {"of": meter.limit.meter, "times": str(meter.limit.factor)}
    return None


def plan_json(plan: Plan) -> dict[str, Any]:
    """A plan as the API lists it (its TOML file is the full truth: docs/plans.md)."""
    return {
        "id": plan.id,
        "name": plan.name,
        "description": plan.description,
        "timezone": plan.timezone,
        "meters": [
            {
                "name": m.name,
                "description": m.description,
                "aggregation": m.aggregation.value,
                "period": None if m.period is None else m.period.value,
                "limit": limit_json(m),
                "enforcement": m.enforcement.mode.value,
                "exclude_suppressed": m.exclude_suppressed,
                "thresholds": [
                    {
                        "name": t.name,
                        "ratio": str(t.ratio),
                        "strict": t.strict,
                        "colour": t.colour.value,
                    }
                    for t in m.thresholds
                ],
                "events": sorted({match.type.value for match in m.events}),
            }
            for m in plan.meters
        ],
        "ladders": [
            {
                "name": ladder.name,
                "meter": ladder.meter,
                "up_to": list(ladder.up_to),
                "months": ladder.window,
            }
            for ladder in plan.ladders
        ],
    }


def placement_json(placement: Placement, meter: str, months: Mapping[str, int]) -> dict[str, Any]:
    return {
        "ladder": placement.ladder,
        "meter": meter,
        "up_to": placement.up_to,
        "average": float(placement.average),
        "average_exact": str(placement.average),
        "months_used": placement.months_used,
        "complete": placement.complete,
        "months": [{"period": k, "used": v} for k, v in months.items()],
    }
