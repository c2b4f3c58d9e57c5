"""The processor's per-event step: bytes -> validated event -> contributions and their rules.

Pure (no Kafka, no Redis), so every decision here is unit-tested without services. Rules
(effective limit, thresholds with their crossing ids, period end, expiry) are cached per
(account, meter, period) and recomputed when the account's or plan's configuration object
changes (they are immutable and replaced on every update), so a limit change reaches the very
next event without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from metering.accounts import Account, effective_limit
from metering.deltas import NO_PERIOD, Contribution
from metering.errors import EventRejected, RejectReason
from metering.events import decode_event
from metering.meters import contributions, suppression
from metering.periods import period_of
from metering.plans import MeterSpec, Plan
from metering.state.model import MeterRule, ThresholdRule
from metering.thresholds import crossing_id, crossing_scope
from streams.batch import MappedEvent


class Directory(Protocol):
    """Where the mapper finds an account's configuration and plan."""

    def lookup(self, account_id: str) -> tuple[Account, Plan] | None:
        """The account and its plan, or None when the account is unknown."""
        ...


@dataclass(frozen=True, slots=True)
class MapperLimits:
    """Validation and lateness settings."""

    grace_ms: int
    max_event_bytes: int = 64 * 1024
    max_future_ms: int = 5 * 60 * 1000
    retention_ms: int = 400 * 86_400_000


class PlanMapper:
    """Maps records to `MappedEvent`s using the accounts' plans."""

    def __init__(self, directory: Directory, limits: MapperLimits) -> None:
        self._directory = directory
        self._limits = limits
        self._rules: dict[tuple[str, str, str], tuple[Account, Plan, int, MeterRule]] = {}

    def map(self, value: bytes | None, *, now_ms: int, watermark_ms: int) -> MappedEvent:
        """Decode and map one record; raise `EventRejected` naming the reason."""
        if value is None:
            raise EventRejected(RejectReason.NOT_JSON, None, "the record has no value")
        limits = self._limits
        event = decode_event(
            value,
            now_ms=now_ms,
            max_bytes=limits.max_event_bytes,
            max_future_ms=limits.max_future_ms,
        )
        found = self._directory.lookup(event.account)
        if found is None:
            raise EventRejected(
                RejectReason.UNKNOWN_ACCOUNT, "subject", f"no account {event.account!r}"
            )
        account, plan = found
        on_time: list[Contribution] = []
        late: list[str] = []
        rules: dict[tuple[str, str], MeterRule] = {}
        for contribution in contributions(event, account, plan):
            period_end, rule = self._rule(account, plan, contribution, event.time_ms)
            if period_end and period_end + limits.grace_ms <= watermark_ms:
                late.append(contribution.meter)
                continue
            on_time.append(contribution)
            rules[(contribution.meter, contribution.period)] = rule
        member = suppression(event)
        suppressions = ((member, event.time_ms),) if member is not None else ()
        return MappedEvent(
            account=event.account,
            event_id=event.id,
            time_ms=event.time_ms,
            contributions=tuple(on_time),
            rules=rules,
            suppressions=suppressions,
            late=tuple(late),
        )

    def _rule(
        self, account: Account, plan: Plan, contribution: Contribution, time_ms: int
    ) -> tuple[int, MeterRule]:
        key = (account.id, contribution.meter, contribution.period)
        cached = self._rules.get(key)
        if cached is not None and cached[0] is account and cached[1] is plan:
            return cached[2], cached[3]
        meter = plan.meter(contribution.meter)
        period_end = 0
        if contribution.period != NO_PERIOD and meter.period is not None:
            tz = account.timezone or plan.timezone
            period_end = period_of(meter.period, time_ms, tz, account.contract_date).end_ms
        rule = self._build_rule(account, plan, meter, contribution.period, period_end)
        if len(self._rules) > 200_000:
            self._rules.clear()
        self._rules[key] = (account, plan, period_end, rule)
        return period_end, rule

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
        expire_at_s = 0
        if period_end:
            expire_at_s = (period_end + self._limits.retention_ms) // 1000
        return MeterRule(
            limit=limit,
            thresholds=thresholds,
            period_end_ms=period_end,
            expire_at_s=expire_at_s,
            scope=scope,
        )
