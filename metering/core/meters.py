"""From one event to what it adds to each meter of its account's plan.

`contributions` is the processor's per-event step: the plan's routes for the event type (one
dictionary look-up), the field filters, the period of the event in the account's timezone and
contract anchor (cached in `metering.core.periods`), and one `Contribution` per meter fed:

| aggregation | amount                          | member / present                      |
|-------------|---------------------------------|---------------------------------------|
| count       | 1                               |                                       |
| sum         | `quantity`                      |                                       |
| distinct    | 0                               | the member (contact)                  |
| gauge       | 0                               | the member; present = effect is add   |
| balance     | +quantity (add) / -quantity     |                                       |

Suppressions (opt-out, hard bounce, suppression list) are facts about a contact, not usage:
`suppression` says which events are such facts; the state store remembers the earliest one
per contact, and distinct meters with `exclude_suppressed` skip members suppressed before the
period started (Act-On). For distinct meters without `exclude_suppressed` the contribution's
`period_start_ms` is 0: no suppression can be older than that (events before 1970 are refused).
"""

from __future__ import annotations

from collections.abc import Iterable

from metering.core.accounts import Account
from metering.core.deltas import NO_PERIOD, AccountDelta, Aggregation, Contribution
from metering.core.events import EventType, UsageEvent
from metering.core.periods import period_of
from metering.core.plans import Effect, EventMatch, MeterSpec, Plan

SUPPRESSION_TYPES = frozenset({EventType.CONTACT_SUPPRESSED, EventType.CONTACT_UNSUBSCRIBED})
"""Events that make a contact suppressed from then on (an unsubscribe is an opt-out)."""


def contributions(event: UsageEvent, account: Account, plan: Plan) -> list[Contribution]:
    """Every contribution `event` makes to the meters of `plan` for `account`."""
    routes = plan.routes(event.type)
    if not routes:
        return []
    tz = account.timezone or plan.timezone
    result = []
    for route in routes:
        match = route.match
        if match.where and not match.accepts(event):
            continue
        meter = route.meter
        if meter.period is None:
            key, start = NO_PERIOD, 0
        else:
            period = period_of(meter.period, event.time_ms, tz, account.contract_date)
            key, start = period.key, period.start_ms
        result.append(contribution(meter, match, key, start, event))
    return result


def contribution(
    meter: MeterSpec, match: EventMatch, key: str, period_start_ms: int, event: UsageEvent
) -> Contribution:
    """What `event` (accepted by `match`) adds to `meter` in the period `key` that starts at
    `period_start_ms` (0 when the meter is not windowed). The processor's mapper calls this
    with periods it caches, so the table above has one implementation."""
    aggregation = meter.aggregation
    if aggregation is Aggregation.COUNT:
        return Contribution(meter.name, key, aggregation, 1, period_start_ms=period_start_ms)
    if aggregation is Aggregation.SUM:
        return Contribution(
            meter.name, key, aggregation, event.quantity, period_start_ms=period_start_ms
        )
    if aggregation is Aggregation.DISTINCT:
        return Contribution(
            meter.name,
            key,
            aggregation,
            member=getattr(event, meter.member_field),
            period_start_ms=period_start_ms if meter.exclude_suppressed else 0,
        )
    if aggregation is Aggregation.GAUGE:
        return Contribution(
            meter.name,
            key,
            aggregation,
            member=getattr(event, meter.member_field),
            present=match.effect is Effect.ADD,
        )
    amount = event.quantity if match.effect is Effect.ADD else -event.quantity
    return Contribution(meter.name, key, aggregation, amount)


def suppression(event: UsageEvent) -> str | None:
    """The contact an event suppresses (opted out, hard bounce, suppression list), if any."""
    if event.type in SUPPRESSION_TYPES:
        return event.contact
    return None


def feed(delta: AccountDelta, event: UsageEvent, account: Account, plan: Plan) -> None:
    """Fold one event of `account` into `delta`: its contributions and its suppression."""
    for contribution in contributions(event, account, plan):
        delta.add(contribution)
    member = suppression(event)
    if member is not None:
        delta.suppress(member, event.time_ms)


def fold_events(account: Account, plan: Plan, events: Iterable[UsageEvent]) -> AccountDelta:
    """Fold `events` (in order) into one `AccountDelta` (no offsets or ids recorded)."""
    delta = AccountDelta(account.id)
    for event in events:
        feed(delta, event, account, plan)
    return delta
