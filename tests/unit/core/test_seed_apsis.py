"""APSIS "Account Usage - Pricing model" (seed 000)."""

from __future__ import annotations

from types import MappingProxyType

from metering.core.accounts import effective_limit
from metering.core.enforcement import Reason, decide_prepaid, decide_use
from metering.core.events import EventType
from metering.core.status import status
from metering.core.thresholds import Colour
from tests.unit.helpers import PLANS, account, event, run

PLAN = PLANS["apsis-essential"]
ACCOUNT = account(PLAN)  # Europe/Stockholm


def test_email_sendings_are_counted_per_month_in_the_account_timezone() -> None:
    events = [
        event(EventType.EMAIL_SENT, "2026-11-30T22:30:00Z", contact="a", kind="marketing"),
        # 23:30Z on Nov 30 is 00:30 on Dec 1 in Stockholm
        event(EventType.EMAIL_SENT, "2026-11-30T23:30:00Z", contact="a", kind="transactional"),
    ]
    state = run(PLAN, ACCOUNT, events)
    assert state.used("email_sendings", "2026-11") == 1
    assert state.used("email_sendings", "2026-12") == 1


def test_approaching_the_monthly_quota_shows_the_banner_at_80_percent() -> None:
    meter = PLAN.meter("email_sendings")
    assert effective_limit(ACCOUNT, PLAN, "email_sendings", "2026-11") == 50_000
    assert status(39_999, 50_000, meter.thresholds).colour is Colour.GREEN
    assert status(40_000, 50_000, meter.thresholds).colour is Colour.YELLOW
    assert status(40_000, 50_000, meter.thresholds).reached == ("at_risk",)


def test_a_temporary_extension_tops_up_sendings_just_for_that_month() -> None:
    extended = account(PLAN, extensions=MappingProxyType({("email_sendings", "2026-11"): 20_000}))
    assert effective_limit(extended, PLAN, "email_sendings", "2026-11") == 70_000
    assert effective_limit(extended, PLAN, "email_sendings", "2026-12") == 50_000
    assert effective_limit(extended, PLAN, "email_sendings", "2026-10") == 50_000


def test_a_permanent_change_applies_to_every_month() -> None:
    upgraded = account(PLAN, limit_overrides=MappingProxyType({"email_sendings": 100_000}))
    for month in ("2026-11", "2026-12", "2027-06"):
        assert effective_limit(upgraded, PLAN, "email_sendings", month) == 100_000


def test_going_over_the_email_quota_is_not_blocked() -> None:
    decisions = decide_use(
        PLAN.meter("email_sendings").enforcement, used=50_000, limit=50_000, amounts=[1]
    )
    assert decisions[0].allowed
    assert decisions[0].reason is Reason.ADVISORY_OVER_LIMIT


def test_unsubscribed_profiles_still_count_and_deleted_profiles_do_not() -> None:
    events = [
        event(EventType.CONTACT_ADDED, "2026-11-01T10:00:00Z", contact="p1", origin="form"),
        event(EventType.CONTACT_ADDED, "2026-11-01T10:00:01Z", contact="p2", origin="import"),
        event(EventType.CONTACT_ADDED, "2026-11-01T10:00:02Z", contact="p3", origin="api"),
        event(EventType.CONTACT_UNSUBSCRIBED, "2026-11-02T10:00:00Z", contact="p2"),
        event(EventType.CONTACT_DELETED, "2026-11-03T10:00:00Z", contact="p3"),
    ]
    state = run(PLAN, ACCOUNT, events)
    assert state.used("known_profiles") == 2  # p1 and the unsubscribed p2
    assert state.members[("known_profiles", "")] == {"p1", "p2"}


def test_audience_size_limit_and_upgrade() -> None:
    assert effective_limit(ACCOUNT, PLAN, "known_profiles", "") == 10_000
    bigger = account(PLAN, limit_overrides=MappingProxyType({"known_profiles": 25_000}))
    assert effective_limit(bigger, PLAN, "known_profiles", "") == 25_000


def test_sms_is_regulated_separately_by_purchased_credits() -> None:
    events = [
        event(EventType.SMS_CREDITS_ADDED, "2026-11-01T09:00:00Z", quantity=100),
        event(EventType.SMS_SENT, "2026-11-01T10:00:00Z", contact="p1", quantity=3),
        event(EventType.EMAIL_SENT, "2026-11-01T10:00:00Z", contact="p1", kind="marketing"),
    ]
    state = run(PLAN, ACCOUNT, events)
    balance = state.used("sms_credits")
    assert balance == 97
    assert state.used("email_sendings", "2026-11") == 1  # SMS do not use the e-mail quota
    decisions = decide_prepaid(balance=balance, amounts=[90, 8, 7])
    assert [d.allowed for d in decisions] == [True, False, True]
    assert decisions[1].reason is Reason.INSUFFICIENT_CREDITS
