"""What events do to an account's meters, before and after aggregation.

The processor turns each event into `Contribution`s (one per meter the event feeds), then folds
a batch's contributions into one `AccountDelta` per account. The state store applies an
`AccountDelta` in one atomic step. Keeping the fold here, pure, lets property tests prove that
the result does not depend on how events are batched (tests/unit/core/test_properties.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Aggregation(StrEnum):
    """How a meter turns events into a number."""

    COUNT = "count"
    """One per event (or `quantity` per event when the meter says so): e-mails sent."""
    SUM = "sum"
    """Sum of an integer quantity carried by the event."""
    DISTINCT = "distinct"
    """Exact number of distinct members (contacts) per period: active contacts."""
    GAUGE = "gauge"
    """A level that goes up and down: known profiles (added minus deleted)."""
    BALANCE = "balance"
    """A prepaid balance: top-ups add, consumption subtracts (SMS credits)."""


NO_PERIOD = ""
"""Period key of meters that are not windowed (gauge levels, balances)."""


@dataclass(slots=True)
class Contribution:
    """What one event adds to one meter in one period.

    Treated as immutable but not frozen: a frozen dataclass costs about five times as much to
    build (1.2 us against 0.25 us here), and the processor builds one or more per event."""

    meter: str
    """Meter name, unique within a plan."""
    period: str
    """Period key (see `metering.core.periods.Period.key`); `NO_PERIOD` for gauges and balances."""
    aggregation: Aggregation
    amount: int = 0
    """Count/sum increment; balance change (negative for consumption)."""
    member: str | None = None
    """Distinct and gauge meters: the member (contact/profile id) the event is about."""
    present: bool = True
    """Gauge meters: True when the member joins (added), False when it leaves (deleted)."""
    period_start_ms: int = 0
    """Start of the period in epoch milliseconds: distinct meters skip members suppressed
    before it (Act-On: suppressed before the current month never counts)."""


@dataclass(slots=True)
class MeterDelta:
    """The folded effect of a batch on one (meter, period)."""

    meter: str
    period: str
    aggregation: Aggregation
    amount: int = 0
    members: dict[str, bool] = field(default_factory=dict)
    """Distinct: member -> True. Gauge: member -> present after the batch (the last operation
    on a member decides the set's final state, so keeping only the last one is exact)."""
    period_start_ms: int = 0
    time_ms: int = 0
    """Event time of the newest event of the batch that counted here (0 when not given): a
    threshold crossing decided by the batch reports it as the crossing's event time."""


@dataclass(slots=True)
class AccountDelta:
    """Everything one batch does to one account: applied by the store in one atomic step."""

    account: str
    meters: dict[tuple[str, str], MeterDelta] = field(default_factory=dict)
    suppressions: dict[str, int] = field(default_factory=dict)
    """Member -> earliest suppression time (epoch ms) seen in the batch."""
    event_ids: list[str] = field(default_factory=list)
    holds: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(hold id, meter, period) -> units that events carrying the hold id used there: the
    store captures the hold with them in the same atomic step (empty for most batches)."""
    first_offset: int = -1
    last_offset: int = -1

    def add(self, contribution: Contribution, time_ms: int = 0) -> None:
        """Fold one contribution (of an event at `time_ms`) in; order matters only for gauge
        members (last wins)."""
        key = (contribution.meter, contribution.period)
        delta = self.meters.get(key)
        if delta is None:
            delta = MeterDelta(
                contribution.meter,
                contribution.period,
                contribution.aggregation,
                period_start_ms=contribution.period_start_ms,
            )
            self.meters[key] = delta
        delta.amount += contribution.amount
        if time_ms > delta.time_ms:  # noqa: PLR1730 - cheaper than a max() call per event
            delta.time_ms = time_ms
        if contribution.member is not None:
            if contribution.aggregation is Aggregation.GAUGE:
                delta.members[contribution.member] = contribution.present
            else:
                delta.members[contribution.member] = True

    def capture(self, hold: str, contribution: Contribution) -> None:
        """Note that `contribution` came from an event carrying admission hold `hold`: its
        units (the absolute amount: a balance spend is negative) replace held ones."""
        if contribution.amount:
            key = (hold, contribution.meter, contribution.period)
            self.holds[key] = self.holds.get(key, 0) + abs(contribution.amount)

    def suppress(self, member: str, at_ms: int) -> None:
        """Remember that `member` was suppressed (opted out, hard bounce) at `at_ms`."""
        known = self.suppressions.get(member)
        if known is None or at_ms < known:
            self.suppressions[member] = at_ms

    def note_event(self, event_id: str, offset: int) -> None:
        """Record an applied event's id (for dedup) and Kafka offset (for the account fence)."""
        self.event_ids.append(event_id)
        if self.first_offset < 0:
            self.first_offset = offset
        self.last_offset = max(self.last_offset, offset)


def fold(account: str, contributions: Iterable[Contribution]) -> AccountDelta:
    """Fold contributions of one account in event order."""
    delta = AccountDelta(account)
    for contribution in contributions:
        delta.add(contribution)
    return delta
