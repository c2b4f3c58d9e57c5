"""The period closer: freezes closed periods, publishes statements, places accounts in tiers.

One pass (`PeriodCloser.close_pass`):

1. Read the stored event-time watermark of every partition of the events topic (what the
   processors reached, `mtr:wm:<group>:<topic>:<p>`). A quiet partition — the processors
   applied everything on it and its end offset has not moved for longer than the grace on
   this closer's clock — is closed by the wall clock instead: its watermark counts as now
   (ADR 0004, "Quiet partitions").
2. Visit every account with an open-period index (`mtr:{A}:p`) and every account whose plan
   has ladders. An account's watermark is the one of the partition(s) its events come from
   (the partitions it has fences for): the processor decides lateness with that very
   watermark, so a period that is due here can no longer receive events (ADR 0004).
3. Per account with something due: claim it (`mtr:{A}:cc`, like the outbox publisher), read
   the totals, decide in Python (metering/core/rollups.py: statements, gap-free ladder series,
   placements with metering.core.tiers.place) and run ONE Lua step (lua/close_period.lua) that
   re-reads every total, freezes the rollups, writes statements and tier events into the
   account's outbox and moves the placement — or, when anything differs from what was read
   (another closer was faster), stops and the account is planned again.
4. Note the accounts in the outbox index and publish their outboxes (sinks/outbox_publisher.py
   routes `kind=statement` / `kind=tier` entries to their topics), at least once, same ids.

`run()` repeats passes when a partition watermark crosses a quarter hour past the grace (every
period boundary is a local midnight, and every UTC offset in use is a multiple of 15 minutes),
and every `sweep_every_s` regardless. A lease (`mtr:close:lease`) lets one closer of several
processors scan at a time; correctness never depends on it (claims and the Lua checks do that).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

import orjson

from metering.core.accounts import Account, timezone_of
from metering.core.deltas import Aggregation
from metering.core.errors import MeteringError
from metering.core.periods import DAY_MS, PeriodKind
from metering.core.plans import Plan
from metering.core.ports import (
    Clock,
    CloseStatus,
    CloseStep,
    CloseStore,
    Freeze,
    LadderWrites,
    OutboxPublishing,
    TierWrite,
    wall_clock_ms,
)
from metering.core.rollups import (
    Code,
    DueSlot,
    Point,
    account_watermark,
    due_slots,
    gauge_levels,
    is_due,
    parse_open_field,
    period_from_key,
    placement_record,
    placements_since,
    statement_body,
    statement_id,
    stored_placement,
    tier_body,
    tier_event_id,
)
from metering.core.tiers import Ladder
from metering.settings import Settings

log = logging.getLogger(__name__)

QUARTER_HOUR_MS = 15 * 60 * 1000

Partitions = Callable[[], Awaitable[Iterable[int]]]
"""The partition numbers of the events topic (Kafka metadata)."""
EndOffsets = Callable[[Sequence[int]], Awaitable[Mapping[int, int]]]
"""The end offsets (next offset to be written) of these partitions of the events topic."""


class AccountDirectory(Protocol):
    """Where the closer finds accounts and plans (metering.core.directory.Directory)."""

    def lookup(self, account_id: str) -> tuple[Account, Plan] | None: ...

    def accounts(self) -> list[Account]: ...

    def plan(self, plan_id: str) -> Plan | None: ...


@dataclass(frozen=True, slots=True)
class CloserConfig:
    """What the closer needs to know besides its collaborators."""

    group: str
    """Consumer group whose stored watermarks decide (the processors')."""
    topic: str
    grace_ms: int
    retention_ms: int
    not_before_ms: int = 0
    """Periods starting earlier are left open (a backfill from a time did not see them whole)."""
    gauges: bool = True
    """Close gauge months (False when the gauges' whole history was not replayed)."""
    poll_s: float = 1.0
    min_interval_s: float = 1.0
    sweep_every_s: float = 300.0
    claim_ttl_ms: int = 60_000
    lease_ttl_ms: int = 60_000
    chunk: int = 500
    attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> CloserConfig:
        config = cls(
            group=settings.consumer_group,
            topic=settings.events_topic,
            grace_ms=settings.grace_s * 1000,
            retention_ms=settings.retention_days * DAY_MS,
        )
        return replace(config, **overrides)  # type: ignore[arg-type]


@dataclass
class PassReport:
    """What a pass (or all passes so far) did."""

    accounts: int = 0
    """Accounts that froze a period or moved a placement."""
    frozen: int = 0
    statements: int = 0
    tiers: int = 0
    mismatches: int = 0
    """Close steps refused because something moved meanwhile (planned again)."""
    claimed_elsewhere: int = 0
    unknown_accounts: int = 0
    errors: int = 0
    """Accounts skipped because closing them raised (logged with the traceback)."""
    waiting: int = 0
    """Accounts with a period a day past its end + grace by the wall clock that their
    partition's watermark has not passed yet (the partition is idle or behind)."""

    def add(self, other: PassReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def changed(self) -> bool:
        return bool(self.frozen or self.tiers)


@dataclass
class _Plan:
    step: CloseStep
    reopened: dict[tuple[str, str], int] = field(default_factory=dict)
    """(meter, period) already frozen whose counter now differs: counted after the close."""


class PeriodCloser:
    """Closes due periods of every account; see the module docstring."""

    def __init__(
        self,
        store: CloseStore,
        directory: AccountDirectory,
        config: CloserConfig,
        *,
        partitions: Partitions,
        publisher: OutboxPublishing | None = None,
        clock_ms: Clock = wall_clock_ms,
        end_offsets: EndOffsets | None = None,
    ) -> None:
        """Without `end_offsets` (a backfill) periods close by stored watermarks only."""
        self._store = store
        self._directory = directory
        self._config = config
        self._partitions = partitions
        self._publisher = publisher
        self._clock_ms = clock_ms
        self._end_offsets = end_offsets
        self._quiet_since: dict[int, tuple[int, int]] = {}
        """Partition -> (end offset, when this closer first saw it at that end offset)."""
        self._owner = uuid.uuid4().hex
        self.totals = PassReport()
        self.passes = 0

    # -- one pass -----------------------------------------------------------------------------

    async def close_pass(self) -> PassReport:
        """Close everything due now; returns what was done."""
        cfg = self._config
        parts = sorted(set(await self._partitions()))
        stored = await self._store.positions(cfg.group, cfg.topic, parts)
        watermarks = await self._watermarks(parts, stored)
        report = PassReport()
        candidates = set(await self._store.open_accounts())
        candidates.update(a.id for a in self._directory.accounts() if self._has_ladders(a))
        touched: list[str] = []
        ordered = sorted(candidates)
        for start in range(0, len(ordered), cfg.chunk):
            chunk = ordered[start : start + cfg.chunk]
            opens = await self._store.open_periods(chunk)
            fences = await self._store.fenced_partitions(chunk, cfg.topic, parts)
            for account_id in chunk:
                wm = account_watermark(fences[account_id], watermarks)
                if wm is None:
                    continue
                try:
                    if await self._close_account(account_id, wm, opens[account_id], report):
                        touched.append(account_id)
                except MeteringError:
                    raise  # Redis or Kafka unavailable: the pass stops, the next one resumes
                except Exception:  # one account's bad data must not stop the rest
                    report.errors += 1
                    log.exception(
                        "closing periods of %s failed; skipped in this pass",
                        account_id,
                        extra={"account": account_id},
                    )
        if touched:
            await self._store.index_outboxes(touched)
            if self._publisher is not None:
                await self._publisher.publish_accounts(touched)
        self.passes += 1
        self.totals.add(report)
        return report

    async def _watermarks(
        self, parts: Sequence[int], stored: Mapping[int, tuple[int, int]]
    ) -> dict[int, int]:
        """Per partition, the watermark that closes its accounts' periods: the stored one, or
        the wall clock for a quiet partition (everything on it applied, and no record arrived
        for longer than the grace)."""
        watermarks = {p: wm for p, (_, wm) in stored.items()}
        if self._end_offsets is None:
            return watermarks
        now = self._clock_ms()
        ends = await self._end_offsets(parts)
        for partition, end in ends.items():
            seen = self._quiet_since.get(partition)
            if seen is None or seen[0] != end:
                self._quiet_since[partition] = (end, now)
                continue
            position = stored.get(partition, (-1, 0))[0]
            if position + 1 >= end and now - seen[1] > self._config.grace_ms:
                watermarks[partition] = max(watermarks.get(partition, 0), now)
        return watermarks

    def _has_ladders(self, account: Account) -> bool:
        plan = self._directory.plan(account.plan_id)
        return plan is not None and bool(plan.ladders)

    async def _close_account(
        self, account_id: str, wm: int, open_fields: dict[str, int], report: PassReport
    ) -> bool:
        """Close what is due for one account; True when its outbox has entries."""
        cfg = self._config
        found = self._directory.lookup(account_id)
        if found is None:
            report.unknown_accounts += 1
            return False
        account, plan = found
        ends = list(open_fields.values())
        if not any(is_due(end, cfg.grace_ms, wm) for end in ends):
            if ends and min(ends) + cfg.grace_ms + DAY_MS <= self._clock_ms():
                report.waiting += 1
            if not plan.ladders:
                return False
        planned = await self._plan(account, plan, wm, open_fields)
        if planned.step.empty:
            return False
        if not await self._store.claim_close(account_id, self._owner, cfg.claim_ttl_ms):
            report.claimed_elsewhere += 1
            return False
        try:
            return await self._close_claimed(account, plan, wm, planned, report)
        finally:
            await self._store.release_close(account_id, self._owner)

    async def _close_claimed(
        self, account: Account, plan: Plan, wm: int, planned: _Plan, report: PassReport
    ) -> bool:
        """Run the close step, planning again while it is refused (something moved)."""
        has_entries = counted = False
        for attempt in range(self._config.attempts):
            if attempt:
                open_fields = (await self._store.open_periods([account.id]))[account.id]
                planned = await self._plan(account, plan, wm, open_fields)
                if planned.step.empty:
                    break
            for (meter, period), amount in planned.reopened.items():
                log.warning(
                    "%s %s:%s: %s counted after the period was frozen (not in its statement)",
                    account.id,
                    meter,
                    period,
                    amount,
                    extra={"account": account.id},
                )
            outcome = await self._store.close_periods(planned.step)
            report.frozen += outcome.frozen
            report.statements += outcome.statements
            report.tiers += outcome.tiers
            if (outcome.frozen or outcome.tiers) and not counted:
                report.accounts += 1
                counted = True
            has_entries = outcome.outbox_length > 0
            if outcome.status is CloseStatus.DONE:
                break
            report.mismatches += 1
            log.info(
                "close of %s planned again: %s",
                account.id,
                outcome.detail,
                extra={"account": account.id},
            )
        else:
            log.warning(
                "close of %s still moving after %d attempts",
                account.id,
                attempt + 1,
                extra={"account": account.id},
            )
        return has_entries

    # -- planning one account ----------------------------------------------------------------

    async def _plan(
        self, account: Account, plan: Plan, wm: int, open_fields: dict[str, int]
    ) -> _Plan:
        """Read what the account's close depends on and decide it (the Lua step re-checks)."""
        cfg = self._config
        ladders = [lad for lad in plan.ladders if self._placeable(plan, lad.meter)]
        meters = {lad.meter for lad in ladders}
        for name, end in open_fields.items():
            opened = parse_open_field(name)
            if opened is not None and is_due(end, cfg.grace_ms, wm):
                meters.add(opened.meter)
        rollups = await self._store.rollups(account.id, sorted(meters)) if meters else {}
        slots = due_slots(
            account,
            plan,
            watermark_ms=wm,
            grace_ms=cfg.grace_ms,
            open_fields=open_fields,
            closed={m: r.keys() for m, r in rollups.items()},
            not_before_ms=cfg.not_before_ms,
            gauges=cfg.gauges,
        )
        totals = await self._totals(account, slots, rollups)
        planned = _Plan(CloseStep(account.id, ()))
        freezes = []
        new: dict[tuple[str, str], int] = {}
        for slot in slots:
            key = (slot.meter, slot.period.key)
            frozen = rollups.get(slot.meter, {}).get(slot.period.key)
            if frozen is not None:  # a stray write re-opened it: close the index field again
                if totals.get(key, frozen) != frozen:
                    planned.reopened[key] = totals[key] - frozen
                freezes.append(Freeze(*key, slot.code, frozen, "", b"", slot.open_field))
                continue
            new[key] = total = totals[key]
            body = orjson.dumps(statement_body(account, plan, slot, total))
            sid = statement_id(account.id, *key)
            freezes.append(Freeze(*key, slot.code, total, sid, body, slot.open_field))
        stored = await self._store.placements(account.id) if ladders else {}
        checks: dict[tuple[str, str], int] = {}
        writes = []
        for ladder in ladders:
            written = self._ladder_writes(
                account, plan, ladder, rollups=rollups, new=new, stored=stored, checks=checks
            )
            if written is not None:
                writes.append(written)
        planned.step = CloseStep(
            account.id,
            tuple(freezes),
            tuple((m, p, t) for (m, p), t in sorted(checks.items())),
            tuple(writes),
            expire_at_s=(self._clock_ms() + cfg.retention_ms) // 1000,
            now_ms=self._clock_ms(),
            closed_through_ms=max(0, wm - cfg.grace_ms),
        )
        return planned

    def _ladder_writes(
        self,
        account: Account,
        plan: Plan,
        ladder: Ladder,
        *,
        rollups: Mapping[str, Mapping[str, int]],
        new: Mapping[tuple[str, str], int],
        stored: Mapping[str, Mapping[str, object]],
        checks: dict[tuple[str, str], int],
    ) -> LadderWrites | None:
        """Placements of `ladder` as of each closed period after the stored one; adds to
        `checks` the earlier rollups they rely on."""
        kind = self._kind(plan, ladder.meter)
        tz, anchor = timezone_of(account, plan), account.contract_date
        values = dict(rollups.get(ladder.meter, {}))
        values.update({period: v for (meter, period), v in new.items() if meter == ladder.meter})
        points = [Point(period_from_key(kind, k, tz, anchor), v) for k, v in values.items()]
        series = sorted(
            (p for p in points if p.period.start_ms >= self._config.not_before_ms),
            key=lambda p: p.period.start_ms,
        )
        record = stored.get(ladder.name)
        previous = stored_placement(record) if record is not None else None
        after = None
        if previous is not None:
            after = period_from_key(kind, previous.as_of, tz, anchor).start_ms
        decisions = placements_since(ladder, series, previous, after)
        if not decisions:
            return None
        for decision in decisions:
            for point in decision.months:
                if (ladder.meter, point.period.key) not in new:
                    checks[(ladder.meter, point.period.key)] = point.total
        return LadderWrites(
            ladder.name,
            None if previous is None else previous.as_of,
            tuple(
                TierWrite(
                    d.as_of,
                    orjson.dumps(placement_record(d)),
                    tier_event_id(account.id, ladder.name, d.as_of) if d.event else "",
                    orjson.dumps(tier_body(account.id, d)) if d.event else b"",
                )
                for d in decisions
            ),
        )

    def _placeable(self, plan: Plan, meter: str) -> bool:
        if not plan.has_meter(meter):
            return False
        spec = plan.meter(meter)
        if spec.aggregation is Aggregation.GAUGE:
            return self._config.gauges
        return spec.period is not None

    @staticmethod
    def _kind(plan: Plan, meter: str) -> PeriodKind:
        return plan.meter(meter).period or PeriodKind.CALENDAR_MONTH

    async def _totals(
        self, account: Account, slots: Sequence[DueSlot], rollups: Mapping[str, Mapping[str, int]]
    ) -> dict[tuple[str, str], int]:
        """Current totals of the due periods: counters, distinct sets and gauge month levels."""
        windowed = [s for s in slots if s.code != Code.GAUGE_MONTH]
        agg = {Code.COUNTER: Aggregation.COUNT, Code.DISTINCT: Aggregation.DISTINCT}
        totals = (
            await self._store.read_amounts(
                account.id, [(s.meter, s.period.key, agg[s.code]) for s in windowed]
            )
            if windowed
            else {}
        )
        months: dict[str, list[str]] = {}
        for slot in slots:
            if slot.code == Code.GAUGE_MONTH and slot.period.key not in rollups.get(slot.meter, {}):
                months.setdefault(slot.meter, []).append(slot.period.key)
        for meter, keys in months.items():
            ops = await self._store.gauge_month_ops(account.id, meter, keys)
            members = sorted({op[1:] for month in ops for op in month})
            level, present = await self._store.gauge_snapshot(account.id, meter, members)
            for key, value in zip(keys, gauge_levels(level, present, ops), strict=True):
                totals[(meter, key)] = value
        return totals

    # -- running ------------------------------------------------------------------------------

    async def _marks(self) -> dict[int, int]:
        """Per partition, the quarter hour its watermark minus the grace has reached."""
        cfg = self._config
        parts = sorted(set(await self._partitions()))
        stored = await self._store.positions(cfg.group, cfg.topic, parts)
        return {p: (wm - cfg.grace_ms) // QUARTER_HOUR_MS for p, (_, wm) in stored.items()}

    async def run(self) -> None:
        """Close passes until cancelled: when a watermark crosses a quarter hour, and every
        `sweep_every_s` (new ladder accounts, retries)."""
        cfg = self._config
        loop = asyncio.get_running_loop()
        last_marks: dict[int, int] | None = None
        last_pass = -math.inf
        next_sweep = 0.0
        delay = cfg.poll_s
        while True:
            try:
                marks = await self._marks()
                now = loop.time()
                moved = marks != last_marks and now - last_pass >= cfg.min_interval_s
                if (now >= next_sweep or moved) and await self._store.take_close_lease(
                    self._owner, cfg.lease_ttl_ms
                ):
                    try:
                        report = await self.close_pass()
                    finally:
                        await self._store.release_close_lease(self._owner)
                    last_marks, last_pass, next_sweep = marks, now, now + cfg.sweep_every_s
                    if report.changed or report.waiting:
                        log.info("close pass: %s", report)
                delay = cfg.poll_s
            except MeteringError as exc:  # Redis or Kafka unavailable: back off, keep going
                delay = min(max(delay, 0.1) * 2, 10.0)
                log.warning("closing periods failed, retrying in %.1fs: %s", delay, exc)
            except Exception:  # a bug must not end the task silently inside a processor
                delay = min(max(delay, 0.1) * 2, 60.0)
                log.exception("close pass failed, retrying in %.1fs", delay)
            await asyncio.sleep(delay)
