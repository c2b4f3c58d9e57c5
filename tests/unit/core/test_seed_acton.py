"""Act-On "Understanding Active Contacts" (seed 004), with the seed's own numbers."""

from __future__ import annotations

from metering.core.accounts import effective_limit
from metering.core.enforcement import Reason, decide_members
from metering.core.events import EventType, UsageEvent
from metering.core.meters import fold_events
from metering.core.periods import PeriodKind, period_of
from metering.core.status import State, status
from metering.core.thresholds import Colour
from tests.unit.helpers import PLANS, MemoryState, account, event, ms, run

PLAN = PLANS["acton-active-contacts"]
METER = PLAN.meter("active_contacts")
ACCOUNT = account(PLAN)  # plan timezone America/New_York
LIST = [f"c{i:05d}" for i in range(50_000)]  # "your contact list contains 50,000 addresses"


def sent(contact: str, time: str = "2026-11-10T15:00:00Z") -> UsageEvent:
    return event(EventType.EMAIL_SENT, time, contact=contact, kind="marketing")


def test_the_plan_is_10000_active_contacts_per_calendar_month_enforced_on_new_contacts() -> None:
    assert effective_limit(ACCOUNT, PLAN, "active_contacts", "2026-11") == 10_000
    assert METER.period is PeriodKind.CALENDAR_MONTH
    assert METER.exclude_suppressed


def test_first_message_marks_active_and_more_messages_count_once() -> None:
    events = [sent("c00001"), sent("c00001"), sent("c00001", "2026-11-29T12:00:00Z")]
    state = run(PLAN, ACCOUNT, events)
    assert state.used("active_contacts", "2026-11") == 1


def test_10000_of_50000_may_be_messaged_and_the_10001st_new_contact_is_refused() -> None:
    decisions = decide_members(
        METER.enforcement,
        used=0,
        limit=10_000,
        counted=set(),
        suppressed=set(),
        members=LIST,
    )
    allowed = [d.item for d in decisions if d.allowed]
    assert allowed == LIST[:10_000]
    assert decisions[10_000].allowed is False
    assert decisions[10_000].reason is Reason.NEW_MEMBER_OVER_LIMIT
    assert decisions[10_000].item == "c10000"  # the 10,001st contact


def test_at_the_limit_active_contacts_can_still_be_messaged_as_often_as_you_like() -> None:
    state = run(PLAN, ACCOUNT, [sent(c) for c in LIST[:10_000]])
    used = state.used("active_contacts", "2026-11")
    assert used == 10_000
    counted = state.members[("active_contacts", "2026-11")]
    decisions = decide_members(
        METER.enforcement,
        used=used,
        limit=10_000,
        counted=counted,
        suppressed=set(),
        members=["c00042", "c20000", "c00042", "c09999"],
    )
    assert [(d.item, d.allowed, d.reason) for d in decisions] == [
        ("c00042", True, Reason.ALREADY_COUNTED),
        ("c20000", False, Reason.NEW_MEMBER_OVER_LIMIT),
        ("c00042", True, Reason.ALREADY_COUNTED),
        ("c09999", True, Reason.ALREADY_COUNTED),
    ]


def test_count_resets_on_the_1st_in_the_accounts_timezone_and_contacts_can_rotate() -> None:
    # 2026-12-01T04:30Z is still Nov 30, 23:30 in New York; 05:00Z is Dec 1, 00:00.
    late_november = [sent(c, "2026-12-01T04:30:00Z") for c in LIST[:10_000]]
    december = [sent(c, "2026-12-01T05:00:00Z") for c in LIST[10_000:20_000]]
    state = run(PLAN, ACCOUNT, late_november + december)
    assert state.used("active_contacts", "2026-11") == 10_000
    assert state.used("active_contacts", "2026-12") == 10_000  # another 10,000 in December
    december_period = period_of(
        PeriodKind.CALENDAR_MONTH, ms("2026-12-01T05:00:00Z"), "America/New_York"
    )
    assert december_period.start_ms == ms("2026-12-01T05:00:00Z")
    decisions = decide_members(
        METER.enforcement, used=0, limit=10_000, counted=set(), suppressed=set(), members=["c00001"]
    )
    assert decisions[0].allowed  # a new month starts at 0


def test_contacts_suppressed_before_the_month_never_count() -> None:
    before = [
        event(EventType.CONTACT_UNSUBSCRIBED, "2026-10-20T10:00:00Z", contact="opted-out"),
        event(
            EventType.CONTACT_SUPPRESSED,
            "2026-10-21T10:00:00Z",
            contact="bounced",
            reason="hard_bounce",
        ),
        event(
            EventType.CONTACT_SUPPRESSED,
            "2026-10-22T10:00:00Z",
            contact="listed",
            reason="suppression_list",
        ),
    ]
    state = run(PLAN, ACCOUNT, before)
    state = run(
        PLAN, ACCOUNT, [sent("opted-out"), sent("bounced"), sent("listed"), sent("ok")], state
    )
    assert state.used("active_contacts", "2026-11") == 1
    # suppressed during the month, after becoming active: still counted this month
    during = [
        sent("late"),
        event(
            EventType.CONTACT_SUPPRESSED, "2026-11-20T10:00:00Z", contact="late", reason="opted_out"
        ),
    ]
    state = run(PLAN, ACCOUNT, during, state)
    assert state.used("active_contacts", "2026-11") == 2


def test_a_suppression_before_the_send_excludes_it_however_the_events_are_batched() -> None:
    events = [
        event(
            EventType.CONTACT_SUPPRESSED, "2026-10-01T00:00:00Z", contact="x", reason="opted_out"
        ),
        sent("x"),
        sent("y"),
    ]
    one = MemoryState()
    one.apply(fold_events(ACCOUNT, PLAN, events))
    split = MemoryState()
    for e in events:
        split.apply(fold_events(ACCOUNT, PLAN, [e]))
    assert one.used("active_contacts", "2026-11") == split.used("active_contacts", "2026-11") == 1


def test_suppressed_contacts_are_allowed_without_using_the_limit() -> None:
    decisions = decide_members(
        METER.enforcement,
        used=10_000,
        limit=10_000,
        counted=set(),
        suppressed={"gone"},
        members=["gone"],
    )
    assert decisions[0].allowed
    assert decisions[0].reason is Reason.SUPPRESSED_NOT_COUNTED


def test_status_at_the_limit_is_red_and_80_percent_is_yellow() -> None:
    assert status(10_000, 10_000, METER.thresholds).colour is Colour.RED
    assert status(8_000, 10_000, METER.thresholds).colour is Colour.YELLOW
    assert status(7_999, 10_000, METER.thresholds).colour is Colour.GREEN
    assert status(9_000, 10_000, METER.thresholds).remaining == 1_000


def test_up_to_the_limit_is_not_over_it() -> None:
    # Act-On counts "up to" its limit: 10,000 of 10,000 is red (reached) but not "over".
    assert status(10_000, 10_000, METER.thresholds).state is State.AT_LIMIT
    assert status(10_001, 10_000, METER.thresholds).state is State.OVER
    assert status(8_000, 10_000, METER.thresholds).state is State.AT_RISK
    assert status(7_999, 10_000, METER.thresholds).state is State.OK
