"""Month shadows of gauges placed in tiers: what the gauge was at each month's end.

A gauge (Clerk's audience: customers imported) has no periods: its set holds the members
present now. Tiers need its level at the end of each calendar month, and "now" is the wrong
answer as soon as the closer runs after the month's end (always) or the processor catches up
on a backlog (then "now" is weeks later). So the processor writes every change of such a gauge
twice, through the same apply step: once to the gauge, once to a shadow of the month the change
belongs to (`<meter>~<month>`, a gauge set of `+member` / `-member`: the member's state after
its last change that month). Closing the month applies the shadow to a snapshot of the previous
month's end (lua/close_period.lua), which gives the level at the month's end in event time,
the same in a live run and in a backfill.

A change whose month is already closed (late, by the partition watermark and the grace) goes
to the oldest month still open, like the gauge itself that counts it late: the snapshot chain
then keeps agreeing with the gauge.

This wraps the processor's mapper (a pure step: no Kafka, no Redis); plans without ladders
over gauges pass through untouched.
"""

from __future__ import annotations

from dataclasses import replace

from metering.core.accounts import timezone_of
from metering.core.deltas import Aggregation, Contribution
from metering.core.fold import MappedEvent
from metering.core.mapper import Directory
from metering.core.periods import PeriodKind, expire_at_s, period_of
from metering.core.plans import Plan
from metering.core.ports import EventMapper, MeterRule
from metering.core.rollups import gauge_month_meter


class GaugeMonths:
    """An `EventMapper` that adds the month-shadow contributions of ladder gauges."""

    def __init__(
        self, inner: EventMapper, directory: Directory, *, grace_ms: int, retention_ms: int
    ) -> None:
        self._inner = inner
        self._directory = directory
        self._grace_ms = grace_ms
        self._retention_ms = retention_ms
        self._ladder_gauges: dict[int, tuple[Plan, frozenset[str]]] = {}

    def map(
        self, value: bytes | None, *, now_ms: int, watermark_ms: int, key: bytes | None = None
    ) -> MappedEvent:
        """Map with the inner mapper, then shadow the changes of gauges placed in tiers."""
        mapped = self._inner.map(value, now_ms=now_ms, watermark_ms=watermark_ms, key=key)
        if not mapped.gauges:
            return mapped
        found = self._directory.lookup(mapped.account)
        if found is None:
            return mapped
        account, plan = found
        gauges = self._gauges_of(plan)
        changes = [c for c in mapped.contributions if c.meter in gauges and c.member is not None]
        if not changes:
            return mapped
        at_ms = max(mapped.time_ms, watermark_ms - self._grace_ms)
        month = period_of(PeriodKind.CALENDAR_MONTH, at_ms, timezone_of(account, plan))
        rule = MeterRule(
            limit=None,
            period_end_ms=month.end_ms,
            expire_at_s=expire_at_s(month.end_ms, self._retention_ms),
            scope=month.key,
        )
        extra: list[Contribution] = []
        extra_rules: list[MeterRule] = []
        for change in changes:
            shadow = gauge_month_meter(change.meter, month.key)
            member = change.member or ""
            extra.append(
                Contribution(
                    shadow,
                    month.key,
                    Aggregation.GAUGE,
                    member="+" + member,
                    present=change.present,
                )
            )
            extra.append(
                Contribution(
                    shadow,
                    month.key,
                    Aggregation.GAUGE,
                    member="-" + member,
                    present=not change.present,
                )
            )
            extra_rules += (rule, rule)
        return replace(
            mapped,
            contributions=[*mapped.contributions, *extra],
            contribution_rules=[*mapped.contribution_rules, *extra_rules],
        )

    def _gauges_of(self, plan: Plan) -> frozenset[str]:
        """Gauge meters of `plan` that a ladder places (cached per plan object)."""
        cached = self._ladder_gauges.get(id(plan))
        if cached is not None and cached[0] is plan:
            return cached[1]
        names = frozenset(
            ladder.meter
            for ladder in plan.ladders
            if plan.has_meter(ladder.meter)
            and plan.meter(ladder.meter).aggregation is Aggregation.GAUGE
        )
        if len(self._ladder_gauges) > 1024:
            self._ladder_gauges.clear()
        self._ladder_gauges[id(plan)] = (plan, names)
        return names
