"""The processor's per-event step: bytes -> validated event -> contributions and their rules.

Pure (no Kafka, no Redis), so every decision here is unit-tested without services. Rules
(effective limit, thresholds with their crossing ids, period end, expiry) are cached per
(account, event type, meter) for the period last seen and recomputed when the account's or
plan's configuration object changes (they are immutable and replaced on every update), so a
limit change reaches the very next event without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from metering.core.accounts import Account, effective_limit
from metering.core.deltas import NO_PERIOD, Aggregation, Contribution
from metering.core.errors import EventRejected, RejectReason
from metering.core.events import EventType, decode_event
from metering.core.fold import MappedEvent
from metering.core.meters import contribution as meter_contribution
from metering.core.meters import suppression
from metering.core.periods import DAY_MS, expire_at_s, period_of
from metering.core.plans import EventMatch, MeterSpec, Plan
from metering.core.ports import MeterRule, ThresholdRule
from metering.core.thresholds import crossing_id, crossing_scope


class Directory(Protocol):
    """Where the mapper finds an account's configuration and plan."""

    def lookup(self, account_id: str) -> tuple[Account, Plan] | None:
        """The account and its plan, or None when the account is unknown."""
        ...


class LimitSettings(Protocol):
    """The part of `metering.settings.Settings` the limits come from (core does not import the
    settings module: the runtime hands them in)."""

    @property
    def grace_s(self) -> int: ...
    @property
    def max_event_bytes(self) -> int: ...
    @property
    def max_future_s(self) -> int: ...
    @property
    def retention_days(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MapperLimits:
    """Validation and lateness settings."""

    grace_ms: int
    max_event_bytes: int = 64 * 1024
    max_future_ms: int = 5 * 60 * 1000
    retention_ms: int = 400 * DAY_MS

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> MapperLimits:
        """The limits a processor (or a backfill) runs with."""
        return cls(
            grace_ms=settings.grace_s * 1000,
            max_event_bytes=settings.max_event_bytes,
            max_future_ms=settings.max_future_s * 1000,
            retention_ms=settings.retention_days * DAY_MS,
        )


@dataclass(slots=True)
class _Lane:
    """One route an event type takes into a meter, with the period it last served cached.

    Mutable on purpose: the period and rule move forward in place when an event falls outside
    [start_ms, end_ms); the meter and match are fixed for the (account, plan) objects it was
    built for."""

    meter: MeterSpec
    match: EventMatch
    start_ms: int = 0
    end_ms: int = -1
    """[start_ms, end_ms) of the cached period; empty until the first event."""
    key: str = NO_PERIOD
    period_start_ms: int = 0
    """Start of the period; 0 when not windowed (what `metering.core.meters.contribution` takes)."""
    period_end_ms: int = 0
    """End of the period for the lateness check; 0 when not windowed (never late)."""
    rule: MeterRule = field(default_factory=lambda: MeterRule(limit=None))


@dataclass(slots=True)
class _Program:
    """The lanes of one (account, event type), valid while the account and plan objects are."""

    account: Account
    plan: Plan
    lanes: tuple[_Lane, ...]


_NEVER = 2**62
"""End of the 'period' of unwindowed meters (gauges, balances): no event reaches it."""


class PlanMapper:
    """Maps records to `MappedEvent`s using the accounts' plans.

    The per-event work is `metering.core.meters.contributions` with everything that does not
    depend on the event's own fields computed once per (account, event type) and per period:
    the routes, the period of each meter and its rule (limit, thresholds, crossing ids, expiry).
    tests/unit/core/test_fuzz_mapper.py checks the result against `contributions` itself.
    """

    def __init__(self, directory: Directory, limits: MapperLimits) -> None:
        self._directory = directory
        self._limits = limits
        self._programs: dict[tuple[str, EventType], _Program] = {}
        self._rules: dict[tuple[str, str, str], tuple[Account, Plan, MeterRule]] = {}
        """Rules per (account, meter, period), shared by the lanes of several event types."""

    def map(
        self, value: bytes | None, *, now_ms: int, watermark_ms: int, key: bytes | None = None
    ) -> MappedEvent:
        """Decode and map one record; raise `EventRejected` naming the reason. `key` is the
        record's Kafka key (None: no key, accepted on the event's subject)."""
        if value is None:
            raise EventRejected(RejectReason.NOT_JSON, None, "the record has no value")
        limits = self._limits
        event = decode_event(
            value,
            now_ms=now_ms,
            key=key,
            max_bytes=limits.max_event_bytes,
            max_future_ms=limits.max_future_ms,
        )
        found = self._directory.lookup(event.account)
        if found is None:
            raise EventRejected(
                RejectReason.UNKNOWN_ACCOUNT, "subject", f"no account {event.account!r}"
            )
        account, plan = found
        program = self._programs.get((event.account, event.type))
        if program is None or program.account is not account or program.plan is not plan:
            program = self._program(account, plan, event.type)
        time_ms = event.time_ms
        on_time: list[Contribution] = []
        rules: list[MeterRule] = []
        late: list[str] = []
        gauges = False
        for lane in program.lanes:
            match = lane.match
            if match.where and not match.accepts(event):
                continue
            if not lane.start_ms <= time_ms < lane.end_ms:
                self._enter(lane, account, plan, time_ms)
            if lane.period_end_ms and lane.period_end_ms + limits.grace_ms <= watermark_ms:
                late.append(lane.meter.name)
                continue
            contribution = meter_contribution(
                lane.meter, match, lane.key, lane.period_start_ms, event
            )
            gauges = gauges or contribution.aggregation is Aggregation.GAUGE
            on_time.append(contribution)
            rules.append(lane.rule)
        member = suppression(event)
        return MappedEvent(
            account=event.account,
            event_id=event.id,
            time_ms=time_ms,
            contributions=on_time,
            contribution_rules=rules,
            suppressions=((member, time_ms),) if member is not None else (),
            late=late,
            gauges=gauges,
            hold=event.hold,
        )

    def _program(self, account: Account, plan: Plan, event_type: EventType) -> _Program:
        lanes = tuple(_Lane(route.meter, route.match) for route in plan.routes(event_type))
        program = _Program(account, plan, lanes)
        if len(self._programs) > 200_000:
            self._programs.clear()
        self._programs[(account.id, event_type)] = program
        return program

    def _enter(self, lane: _Lane, account: Account, plan: Plan, time_ms: int) -> None:
        """Move `lane` to the period containing `time_ms` (and that period's rule)."""
        meter = lane.meter
        if meter.period is None:
            lane.start_ms, lane.end_ms = -_NEVER, _NEVER
            lane.key, lane.period_start_ms, lane.period_end_ms = NO_PERIOD, 0, 0
        else:
            tz = account.timezone or plan.timezone
            period = period_of(meter.period, time_ms, tz, account.contract_date)
            lane.start_ms, lane.end_ms = period.start_ms, period.end_ms
            lane.key, lane.period_start_ms = period.key, period.start_ms
            lane.period_end_ms = period.end_ms
        key = (account.id, meter.name, lane.key)
        cached = self._rules.get(key)
        if cached is not None and cached[0] is account and cached[1] is plan:
            lane.rule = cached[2]
            return
        lane.rule = self._build_rule(account, plan, meter, lane.key, lane.period_end_ms)
        if len(self._rules) > 200_000:
            self._rules.clear()
        self._rules[key] = (account, plan, lane.rule)

    def _build_rule(
        self, account: Account, plan: Plan, meter: MeterSpec, period: str, period_end: int
    ) -> MeterRule:
        limit = effective_limit(account, plan, meter.name, period)
        thresholds: tuple[ThresholdRule, ...] = ()
        scope = period
        if limit is not None:
            scope = crossing_scope(period, limit)
            thresholds = tuple(
                ThresholdRule(
                    name=t.name,
                    num=t.ratio.numerator,
                    den=t.ratio.denominator,
                    crossing_id=crossing_id(account.id, meter.name, scope, t.name),
                    strict=t.strict,
                )
                for t in meter.thresholds
            )
        expire_at = 0
        if period_end:
            expire_at = expire_at_s(period_end, self._limits.retention_ms)
        return MeterRule(
            limit=limit,
            thresholds=thresholds,
            period_end_ms=period_end,
            expire_at_s=expire_at,
            scope=scope,
        )
