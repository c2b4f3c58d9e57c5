"""One account's share of a partition batch, kept per event so that replays can be cut exactly.

Pure (no Kafka, no Redis): the processor fills an `AccountWork` per account while it reads a
batch, turns it into an `ApplyStep`, and when the store answers PARTIAL (the account fence lies
inside the step) or DUPLICATES (event ids already counted) it cuts the work and asks again.
Those answers only come after a restart, a rebalance or a producer retry, so the common path
folds once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from metering.core.deltas import AccountDelta, Contribution
from metering.core.ports import ApplyStep, MeterRule


@dataclass(slots=True)
class MappedEvent:
    """An accepted event, mapped to what it does to its account's meters (treated as
    immutable; not frozen for the same reason as `metering.core.deltas.Contribution`)."""

    account: str
    event_id: str
    time_ms: int
    contributions: Sequence[Contribution]
    """Contributions to periods still open (late ones are left out and named in `late`)."""
    contribution_rules: Sequence[MeterRule]
    """The rule of each contribution's (meter, period), in the same order (a parallel list
    rather than a dictionary per event: this is built once per event on the hot path)."""
    suppressions: tuple[tuple[str, int], ...] = ()
    late: Sequence[str] = ()
    """Meters whose period had closed (end + grace before the watermark) for this event."""
    gauges: bool = False
    """Some contribution goes to a gauge (the month shadows of `metering.core.gauge_months`)."""
    hold: str | None = None
    """The admission hold the event captures (`UsageEvent.hold`)."""

    @property
    def rules(self) -> dict[tuple[str, str], MeterRule]:
        """Rule of each (meter, period) a contribution goes to."""
        return {
            (c.meter, c.period): rule
            for c, rule in zip(self.contributions, self.contribution_rules, strict=True)
        }


@dataclass(slots=True)
class _Item:
    offset: int
    event: MappedEvent


@dataclass(slots=True)
class AccountWork:
    """Events of one account from one partition batch, in offset order.

    The delta is folded as events arrive (the common case applies it as is); the events are
    kept too, so that a cut (a fence inside the batch, remembered ids) can fold again what is
    left.
    """

    account: str
    topic: str
    partition: int
    items: list[_Item] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    dropped_duplicates: int = 0
    _ids: set[str] = field(default_factory=set)
    _delta: AccountDelta | None = None
    _rules: dict[tuple[str, str], MeterRule] = field(default_factory=dict)

    def add(self, offset: int, event: MappedEvent) -> bool:
        """Append the next event of this account (offsets grow); False when its id is already
        in this batch (a producer retry landing close to the original): it is not counted, but
        its offset still moves the fence."""
        if self.first_offset < 0:
            self.first_offset = offset
        self.last_offset = offset
        if event.event_id in self._ids:
            self.dropped_duplicates += 1
            return False
        self._ids.add(event.event_id)
        self.items.append(_Item(offset, event))
        if self._delta is None:
            self._delta = AccountDelta(self.account)
        _fold(self._delta, self._rules, event)
        return True

    @property
    def events(self) -> int:
        """Events still to apply."""
        return len(self.items)

    def step(self) -> ApplyStep:
        """The store step for what is left; its offsets span the whole range still unfenced,
        so the fence moves past dropped duplicates too."""
        if self._delta is None:  # nothing folded yet, or a cut: fold what is left
            self._delta = AccountDelta(self.account)
            self._rules = {}
            for item in self.items:
                _fold(self._delta, self._rules, item.event)
        delta = self._delta
        delta.first_offset = self.first_offset
        delta.last_offset = self.last_offset
        return ApplyStep(delta, self.topic, self.partition, self._rules)

    def cut_to_fence(self, fence: int) -> int:
        """Forget events at or below `fence` (already applied); returns how many."""
        before = len(self.items)
        self.items = [item for item in self.items if item.offset > fence]
        self.first_offset = fence + 1
        self._delta = None
        return before - len(self.items)

    def drop_ids(self, event_ids: tuple[str, ...]) -> int:
        """Forget events whose id the store already counted; returns how many."""
        ids = set(event_ids)
        before = len(self.items)
        self.items = [item for item in self.items if item.event.event_id not in ids]
        self._delta = None
        dropped = before - len(self.items)
        self.dropped_duplicates += dropped
        return dropped

    def refuse_closed(self, closed: Sequence[tuple[str, str]]) -> list[tuple[int, list[str]]]:
        """Take the contributions to closed (meter, period)s out of the events (the store
        found those periods closed, and a closed period never changes); an event left with
        nothing to apply is forgotten, like one the mapper found late. Returns, per event
        that lost something, its offset and the meters it is late for (for the late topic).

        The offsets the step spans do not change, so the fence still moves past them."""
        refused = set(closed)
        late: list[tuple[int, list[str]]] = []
        kept: list[_Item] = []
        for item in self.items:
            event = item.event
            if not any((c.meter, c.period) in refused for c in event.contributions):
                kept.append(item)
                continue
            meters: list[str] = []
            contributions = []
            rules = []
            for c, rule in zip(event.contributions, event.contribution_rules, strict=True):
                if (c.meter, c.period) in refused:
                    if c.meter not in meters:
                        meters.append(c.meter)
                else:
                    contributions.append(c)
                    rules.append(rule)
            late.append((item.offset, meters))
            if contributions or event.suppressions:
                kept.append(
                    _Item(
                        item.offset,
                        replace(
                            event,
                            contributions=contributions,
                            contribution_rules=rules,
                            late=[*event.late, *meters],
                        ),
                    )
                )
        self.items = kept
        self._delta = None
        return late


def _fold(delta: AccountDelta, rules: dict[tuple[str, str], MeterRule], event: MappedEvent) -> None:
    add = delta.add
    time_ms = event.time_ms
    for contribution, rule in zip(event.contributions, event.contribution_rules, strict=True):
        add(contribution, time_ms)
        rules[(contribution.meter, contribution.period)] = rule  # the batch's newest wins
    for member, at_ms in event.suppressions:
        delta.suppress(member, at_ms)
    if event.hold is not None:
        for contribution in event.contributions:
            delta.capture(event.hold, contribution)
    delta.event_ids.append(event.event_id)
