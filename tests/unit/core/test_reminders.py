"""Which crossings are reminded, when, and what the message says (metering/core/reminders.py).

ActiveCampaign (seed 002): an e-mail every 15 days while approaching the contact limit, until
the account is upgraded.
"""

from __future__ import annotations

from types import MappingProxyType

from metering.core.periods import DAY_MS
from metering.core.reminders import checks_for, has_reminders, reminder_due
from metering.core.rfc3339 import parse_ms
from metering.core.thresholds import crossing_id, reminder_id
from tests.unit.helpers import PLANS, account

AC = PLANS["activecampaign-lite"]
NOW = parse_ms("2026-11-29T07:00:00Z")


def test_only_reminding_thresholds_of_the_current_limit_are_checked() -> None:
    checks = checks_for(account(AC), AC, NOW)
    assert [(c.meter, c.threshold.name, c.scope, c.limit) for c in checks] == [
        ("contacts", "approaching", "L2500", 2500)
    ]
    assert checks[0].crossing_id == crossing_id(account(AC).id, "contacts", "L2500", "approaching")
    assert checks[0].period == ""
    upgraded = account(AC, limit_overrides=MappingProxyType({"contacts": 5000}))
    assert [c.scope for c in checks_for(upgraded, AC, NOW)] == ["L5000"]
    assert not has_reminders(PLANS["clerk"])
    assert has_reminders(AC)


def test_every_15_days_after_the_crossing_and_only_the_latest_when_several_are_due() -> None:
    check = checks_for(account(AC), AC, NOW)[0]
    crossed = NOW - 100 * DAY_MS
    due = [
        reminder_due(check, crossed_at_ms=crossed, last_sent=0, now_ms=crossed + d * DAY_MS)
        for d in (14, 15, 29)
    ]
    assert [None if d is None else d.number for d in due] == [None, 1, 1]
    assert (
        reminder_due(check, crossed_at_ms=crossed, last_sent=1, now_ms=crossed + 29 * DAY_MS)
        is None
    )
    late = reminder_due(check, crossed_at_ms=crossed, last_sent=1, now_ms=crossed + 88 * DAY_MS)
    assert late is not None
    assert (late.number, late.id) == (5, reminder_id(check.crossing_id, 5))
    assert late.due_at_ms == crossed + 75 * DAY_MS
    assert reminder_due(check, crossed_at_ms=None, last_sent=0, now_ms=NOW) is None


def test_the_message_names_the_crossing_and_has_no_internal_scope() -> None:
    check = checks_for(account(AC), AC, NOW)[0]
    crossed = parse_ms("2026-11-01T09:00:00.250Z")
    reminder = reminder_due(check, crossed_at_ms=crossed, last_sent=0, now_ms=NOW)
    assert reminder is not None
    body = reminder.body()
    assert body == {
        "type": "threshold.reminder",
        "version": 1,
        "id": reminder_id(check.crossing_id, 1),
        "crossing_id": check.crossing_id,
        "account": check.account,
        "meter": "contacts",
        "period": None,
        "threshold": "approaching",
        "ratio": "4/5",
        "strict": False,
        "limit": 2500,
        "number": 1,
        "every_days": 15,
        "crossed_at": "2026-11-01T09:00:00.250Z",
        "due_at": "2026-11-16T09:00:00.250Z",
    }
