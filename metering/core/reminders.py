"""Reminders of thresholds still reached: which to check, when one is due, and what it says.

ActiveCampaign: "as you approach your contact limit, we e-mail you every 15 days until you
upgrade". A threshold with `remind_every_days` (`Threshold.remind_every_ms`) gets a reminder
every N days after its crossing while the account is still at or above it under its current
limit. The reminder scheduler (streams/reminders.py) runs on the wall clock, not on events,
because an account at its limit may be unable to send anything.

Rules (docs/plans.md, "Reminders"):

- The crossing is the one of the meter's current period (by the scheduler's clock, in the
  account's timezone), or for an unwindowed meter (gauge) of its current limit: a new period
  starts below every threshold, and a raised limit is a new crossing scope that was never
  crossed, so reminders of the old one stop.
- Reminder n falls due at `crossed_at + n x every` (`crossed_at` is when the processor decided
  the crossing). When the scheduler finds several due at once (it was down), it sends only the
  latest, numbered n, and never the skipped ones: one e-mail, not a burst.
- It is sent only while the threshold is reached by the stored usage when the reminder is
  decided; a due reminder is held while usage is below and sent if usage comes back up (the
  crossing itself is not re-announced: it is once per scope).
- Its id is `reminder_id(crossing_id, n)`: the same reminder always has the same id.
"""

from __future__ import annotations

from dataclasses import dataclass

from metering.core.accounts import Account, effective_limit, timezone_of
from metering.core.deltas import NO_PERIOD, Aggregation
from metering.core.periods import DAY_MS, period_of
from metering.core.plans import Plan
from metering.core.rfc3339 import format_ms
from metering.core.thresholds import (
    Threshold,
    crossing_id,
    crossing_scope,
    reminder_id,
    reminders_due,
)

REMINDER_TYPE = "threshold.reminder"
"""`type` of a reminder message (docs/configuration.md, "Reminder messages")."""


@dataclass(frozen=True, slots=True)
class ReminderCheck:
    """One (account, meter, current period or limit, threshold) whose crossing may need a
    reminder now."""

    account: str
    meter: str
    aggregation: Aggregation
    period: str
    """Current period key; `NO_PERIOD` for gauges."""
    scope: str
    """Crossing scope (the period key, or `L<limit>` for gauges): part of the mark key."""
    threshold: Threshold
    limit: int
    crossing_id: str

    @property
    def every_ms(self) -> int:
        return self.threshold.remind_every_ms or 0


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder the scheduler decided to send (the store re-checks it atomically)."""

    check: ReminderCheck
    number: int
    """1-based: the n-th reminder after the crossing."""
    id: str
    crossed_at_ms: int
    """When the crossing was decided (the store refuses the reminder if this changed)."""
    due_at_ms: int

    def body(self) -> dict[str, object]:
        """The message without `used`, which the store adds when it decides (the usage it
        checked the threshold against)."""
        c = self.check
        return {
            "type": REMINDER_TYPE,
            "version": 1,
            "id": self.id,
            "crossing_id": c.crossing_id,
            "account": c.account,
            "meter": c.meter,
            "period": c.period if c.period != NO_PERIOD else None,
            "threshold": c.threshold.name,
            "ratio": f"{c.threshold.ratio.numerator}/{c.threshold.ratio.denominator}",
            "strict": c.threshold.strict,
            "limit": c.limit,
            "number": self.number,
            "every_days": c.every_ms // DAY_MS,
            "crossed_at": format_ms(self.crossed_at_ms),
            "due_at": format_ms(self.due_at_ms),
        }


def has_reminders(plan: Plan) -> bool:
    """Does any threshold of the plan remind?"""
    return any(t.remind_every_ms for m in plan.meters for t in m.thresholds)


def checks_for(account: Account, plan: Plan, now_ms: int) -> list[ReminderCheck]:
    """The crossings of `account` that could need a reminder at `now_ms`.

    Only meters with a limit now and thresholds with `remind_every_ms`; the period is the one
    containing `now_ms` in the account's timezone (gauges and balances have none).
    """
    found: list[ReminderCheck] = []
    for meter in plan.meters:
        reminding = [t for t in meter.thresholds if t.remind_every_ms]
        if not reminding:
            continue
        period = NO_PERIOD
        if meter.period is not None:
            tz = timezone_of(account, plan)
            period = period_of(meter.period, now_ms, tz, account.contract_date).key
        limit = effective_limit(account, plan, meter.name, period)
        if limit is None:
            continue
        scope = crossing_scope(period, limit)
        found.extend(
            ReminderCheck(
                account=account.id,
                meter=meter.name,
                aggregation=meter.aggregation,
                period=period,
                scope=scope,
                threshold=threshold,
                limit=limit,
                crossing_id=crossing_id(account.id, meter.name, scope, threshold.name),
            )
            for threshold in reminding
        )
    return found


def reminder_due(
    check: ReminderCheck, *, crossed_at_ms: int | None, last_sent: int, now_ms: int
) -> Reminder | None:
    """The reminder to send now, or None (never crossed, or none due beyond `last_sent`)."""
    if crossed_at_ms is None or check.every_ms <= 0:
        return None
    number = reminders_due(crossed_at_ms, check.every_ms, now_ms)
    if number <= last_sent:
        return None
    return Reminder(
        check=check,
        number=number,
        id=reminder_id(check.crossing_id, number),
        crossed_at_ms=crossed_at_ms,
        due_at_ms=crossed_at_ms + number * check.every_ms,
    )
