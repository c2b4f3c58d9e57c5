"""The reminder scheduler: sends reminders of thresholds still reached, on the wall clock.

A crossing is announced once, by the processor, when an event moves usage over a threshold.
A threshold with `remind_every_days` is then reminded every N days while the account stays at
or above it (ActiveCampaign: "every 15 days until you upgrade"). Nothing in the event stream
would trigger that — an account at its limit may send nothing at all — so this scheduler runs
on a clock: every `interval_s` it visits the accounts whose plan has reminding thresholds.

One pass (`ReminderScheduler.remind_pass`):

1. Per account, the crossings that could need a reminder now (metering/core/reminders.py:
   current period or current limit, live configuration from the directory).
2. Read their crossing marks and last reminder numbers (one MGET per chunk).
3. For each reminder due beyond the last one sent, run ONE Lua step (lua/remind.lua) that
   re-checks the mark, the number and the usage against the threshold and, only if all hold,
   puts the reminder into the account's outbox and records its number — so a crash never
   loses one (the outbox is published at least once, same id) and two schedulers never fork
   one (the number moves forward once).
4. Note the accounts in the outbox index and publish their outboxes (sinks/outbox_publisher.py
   routes `kind=reminder` entries to the reminders topic).

A lease (`mtr:remind:lease`) lets one scheduler of several scan at a time; correctness never
depends on it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import orjson

from metering.core.accounts import Account
from metering.core.errors import MeteringError
from metering.core.plans import Plan
from metering.core.ports import (
    Clock,
    OutboxPublishing,
    ReminderStatus,
    ReminderStore,
    wall_clock_ms,
)
from metering.core.reminders import ReminderCheck, checks_for, has_reminders, reminder_due

log = logging.getLogger(__name__)


class ReminderDirectory(Protocol):
    """Where the scheduler finds accounts and plans (metering.core.directory.Directory)."""

    def accounts(self) -> list[Account]: ...

    def plan(self, plan_id: str) -> Plan | None: ...


@dataclass
class ReminderReport:
    """What a pass (or all passes so far) did."""

    checked: int = 0
    """Crossings looked at (account x meter x reminding threshold)."""
    sent: int = 0
    already_sent: int = 0
    """Decided elsewhere meanwhile (another scheduler)."""
    held: int = 0
    """Due, but usage is below the threshold now: not sent (sent if usage comes back)."""
    errors: int = 0

    def add(self, other: ReminderReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class ReminderScheduler:
    """Sends due reminders; see the module docstring."""

    def __init__(
        self,
        store: ReminderStore,
        directory: ReminderDirectory,
        *,
        publisher: OutboxPublishing | None = None,
        clock_ms: Clock = wall_clock_ms,
        interval_s: float = 60.0,
        lease_ttl_ms: int = 60_000,
        chunk: int = 500,
    ) -> None:
        self._store = store
        self._directory = directory
        self._publisher = publisher
        self._clock_ms = clock_ms
        self._interval_s = interval_s
        self._lease_ttl_ms = lease_ttl_ms
        self._chunk = chunk
        self._owner = uuid.uuid4().hex
        self.totals = ReminderReport()
        self.passes = 0

    def _checks(self, now_ms: int) -> list[ReminderCheck]:
        found: list[ReminderCheck] = []
        for account in self._directory.accounts():
            plan = self._directory.plan(account.plan_id)
            if plan is not None and has_reminders(plan):
                found += checks_for(account, plan, now_ms)
        return found

    async def remind_pass(self) -> ReminderReport:
        """Send every reminder due now; returns what was done."""
        now_ms = self._clock_ms()
        report = ReminderReport()
        checks = self._checks(now_ms)
        report.checked = len(checks)
        touched: set[str] = set()
        for start in range(0, len(checks), self._chunk):
            await self._chunk_pass(checks[start : start + self._chunk], now_ms, report, touched)
        if touched:
            await self._store.index_outboxes(sorted(touched))
            if self._publisher is not None:
                await self._publisher.publish_accounts(sorted(touched))
        self.passes += 1
        self.totals.add(report)
        return report

    async def _chunk_pass(
        self,
        checks: Sequence[ReminderCheck],
        now_ms: int,
        report: ReminderReport,
        touched: set[str],
    ) -> None:
        states = await self._store.reminder_states(checks)
        for check, (crossed_at, last_sent) in zip(checks, states, strict=True):
            reminder = reminder_due(
                check, crossed_at_ms=crossed_at, last_sent=last_sent, now_ms=now_ms
            )
            if reminder is None:
                continue
            try:
                outcome = await self._store.send_reminder(
                    reminder, orjson.dumps(reminder.body()), now_ms
                )
            except MeteringError:
                raise  # Redis unavailable: the pass stops, the next one resumes
            except Exception:  # one account's bad data must not stop the rest
                report.errors += 1
                log.exception(
                    "reminder %s of %s failed",
                    reminder.id,
                    check.account,
                    extra={"account": check.account},
                )
                continue
            if outcome.status is ReminderStatus.SENT:
                report.sent += 1
                touched.add(check.account)
                log.info(
                    "reminder %d of %s %s %s sent (id %s)",
                    reminder.number,
                    check.account,
                    check.meter,
                    check.threshold.name,
                    reminder.id,
                    extra={"account": check.account},
                )
            elif outcome.status is ReminderStatus.ALREADY_SENT:
                report.already_sent += 1
            elif outcome.status is ReminderStatus.BELOW:
                report.held += 1

    async def run(self) -> None:
        """Reminder passes every `interval_s` until cancelled."""
        delay = self._interval_s
        while True:
            try:
                if await self._store.take_reminder_lease(self._owner, self._lease_ttl_ms):
                    try:
                        report = await self.remind_pass()
                    finally:
                        await self._store.release_reminder_lease(self._owner)
                    if report.sent or report.errors:
                        log.info("reminder pass: %s", report)
                delay = self._interval_s
            except MeteringError as exc:  # Redis or Kafka unavailable: back off, keep going
                delay = min(max(delay, 0.1) * 2, 60.0)
                log.warning("sending reminders failed, retrying in %.1fs: %s", delay, exc)
            except Exception:  # a bug must not end the task silently inside a processor
                delay = min(max(delay, 0.1) * 2, 60.0)
                log.exception("reminder pass failed, retrying in %.1fs", delay)
            await asyncio.sleep(delay)
