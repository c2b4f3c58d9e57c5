"""The reminder scheduler's part of the store: crossing marks, reminder numbers, the atomic
reminder step (lua/remind.lua) and its lease. Typed by `metering.core.ports.ReminderStore`."""

from __future__ import annotations

from collections.abc import Sequence

from redis.commands.core import AsyncScript

from metering.core.deltas import Aggregation
from metering.core.ports import ReminderOutcome, ReminderStatus
from metering.core.reminders import Reminder, ReminderCheck
from metering.state import keys
from metering.state.connection import RedisConnection, load_script, text, translated


def _usage(check: ReminderCheck) -> tuple[str, str]:
    """The key holding the check's usage and how to read it (`get` or `scard`)."""
    account, meter, period = check.account, check.meter, check.period
    if check.aggregation in (Aggregation.COUNT, Aggregation.SUM):
        return keys.counter_key(account, meter, period), "get"
    if check.aggregation is Aggregation.BALANCE:
        return keys.balance_key(account, meter), "get"
    if check.aggregation is Aggregation.DISTINCT:
        return keys.distinct_key(account, meter, period), "scard"
    return keys.gauge_key(account, meter), "scard"


class ReminderState(RedisConnection):
    """What the reminder scheduler reads, and the reminder step."""

    _remind: AsyncScript | None = None
    """Registered on first use (only the scheduler sends reminders)."""

    async def reminder_states(
        self, checks: Sequence[ReminderCheck]
    ) -> list[tuple[int | None, int]]:
        """Per check: crossing time (None: not crossed) and last reminder number (0: none)."""
        if not checks:
            return []
        names: list[str] = []
        for c in checks:
            coords = (c.account, c.meter, c.scope, c.threshold.name)
            names += [keys.crossing_mark_key(*coords), keys.reminder_key(*coords)]
        async with translated("read reminder states"):
            values = await self._client.mget(names)
        return [
            (None if mark is None else int(text(mark)), int(text(sent) or 0))
            for mark, sent in zip(values[::2], values[1::2], strict=True)
        ]

    async def send_reminder(
        self, reminder: Reminder, body: bytes, now_ms: int
    ) -> ReminderOutcome:
        """Re-check the crossing, the number and the usage; put the reminder in the outbox."""
        if self._remind is None:
            self._remind = self._client.register_script(load_script("remind.lua"))
        c = reminder.check
        coords = (c.account, c.meter, c.scope, c.threshold.name)
        usage_key, read = _usage(c)
        ratio = c.threshold.ratio
        async with translated("send reminder"):
            reply = await self._remind(
                keys=[
                    keys.crossing_mark_key(*coords),
                    keys.reminder_key(*coords),
                    usage_key,
                    keys.outbox_key(c.account),
                ],
                args=[
                    reminder.number,
                    reminder.crossed_at_ms,
                    read,
                    ratio.numerator,
                    ratio.denominator,
                    1 if c.threshold.strict else 0,
                    c.limit,
                    reminder.id,
                    c.account,
                    body,
                    now_ms,
                ],
            )
        return ReminderOutcome(ReminderStatus(int(reply[0])), int(reply[1]))

    async def take_reminder_lease(self, owner: str, ttl_ms: int) -> bool:
        """Take (or extend, when ours) the right to run a reminder pass."""
        async with translated("take reminder lease"):
            if await self._client.set(keys.REMINDER_LEASE, owner, nx=True, px=ttl_ms):
                return True
            if text(await self._client.get(keys.REMINDER_LEASE)) == owner:
                await self._client.pexpire(keys.REMINDER_LEASE, ttl_ms)
                return True
        return False

    async def release_reminder_lease(self, owner: str) -> None:
        async with translated("release reminder lease"):
            await self._release(keys=[keys.REMINDER_LEASE], args=[owner])
