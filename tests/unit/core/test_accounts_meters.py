"""Accounts (limits, overrides, extensions, checks) and the event -> contributions mapping."""

from __future__ import annotations

from datetime import date
from types import MappingProxyType

import pytest

from metering.core.accounts import Account, base_limit, check_account, effective_limit, timezone_of
from metering.core.deltas import NO_PERIOD, Aggregation, Contribution
from metering.core.errors import AccountError, UnknownMeter
from metering.core.events import EventType
from metering.core.meters import contributions, fold_events, suppression
from metering.core.periods import PeriodKind, period_of
from metering.core.plan_loading import parse_plan
from tests.unit.helpers import PLANS, account, event, ms

ACTITO = PLANS["actito-standard"]


def test_limits_unlimited_meter_and_unknown_meter() -> None:
    clerk = PLANS["clerk"]
    acct = account(clerk)
    assert effective_limit(acct, clerk, "searches", "2026-11") is None
    with pytest.raises(UnknownMeter):
        effective_limit(acct, clerk, "nope", "2026-11")


def test_derived_limits_round_down() -> None:
    plan = parse_plan(
        """
id = "d"
name = "D"
[meters.base]
aggregation = "gauge"
limit = 7
events = [{ type = "contact.added" }]
[meters.derived]
aggregation = "count"
period = "day"
limit = { of = "base", times = "3/2" }
events = [{ type = "email.sent" }]
""",
        source="d.toml",
    )
    acct = Account("a", "d")
    assert base_limit(acct, plan, "derived") == 10  # 10.5 rounded down
    extended = Account("a", "d", extensions=MappingProxyType({("derived", "d2026-11-23"): 5}))
    assert effective_limit(extended, plan, "derived", "d2026-11-23") == 15
    overridden = Account("a", "d", limit_overrides=MappingProxyType({"derived": 3}))
    assert effective_limit(overridden, plan, "derived", "d2026-11-23") == 3


def test_check_account() -> None:
    good = account(ACTITO, contract_date=date(2025, 3, 15))
    check_account(good, ACTITO)
    with pytest.raises(AccountError, match="contract_date: required by meter interactions"):
        check_account(account(ACTITO), ACTITO)
    with pytest.raises(AccountError, match="plan_id"):
        check_account(Account("a", "other", contract_date=date(2025, 1, 1)), ACTITO)
    with pytest.raises(AccountError, match="timezone"):
        check_account(account(ACTITO, contract_date=date(2025, 1, 1), timezone="Nowhere/X"), ACTITO)
    with pytest.raises(AccountError, match=r"limit_overrides\.ghost"):
        check_account(
            account(
                ACTITO,
                contract_date=date(2025, 1, 1),
                limit_overrides=MappingProxyType({"ghost": 1}),
            ),
            ACTITO,
        )
    with pytest.raises(AccountError, match="must be an integer >= 0"):
        check_account(
            account(
                ACTITO,
                contract_date=date(2025, 1, 1),
                extensions=MappingProxyType({("profiles", "x"): -1}),
            ),
            ACTITO,
        )


def test_account_timezone_overrides_the_plans() -> None:
    apsis = PLANS["apsis-essential"]
    assert timezone_of(account(apsis), apsis) == "Europe/Stockholm"
    tokyo = account(apsis, timezone="Asia/Tokyo")
    assert timezone_of(tokyo, apsis) == "Asia/Tokyo"
    # 2026-11-30T16:00Z is already December in Tokyo
    e = event(EventType.EMAIL_SENT, "2026-11-30T16:00:00Z", contact="c", kind="marketing")
    assert contributions(e, tokyo, apsis)[0].period == "2026-12"
    assert contributions(e, account(apsis), apsis)[0].period == "2026-11"


def test_contribution_shapes_per_aggregation() -> None:
    it = parse_plan(
        """
id = "all"
name = "All"
timezone = "Europe/Paris"
[meters.count]
aggregation = "count"
period = "day"
events = [{ type = "sms.sent" }]
[meters.sum]
aggregation = "sum"
period = "calendar_month"
events = [{ type = "sms.sent" }]
[meters.distinct]
aggregation = "distinct"
period = "calendar_month"
exclude_suppressed = true
events = [{ type = "sms.sent" }]
[meters.distinct_all]
aggregation = "distinct"
period = "calendar_month"
events = [{ type = "sms.sent" }]
[meters.gauge]
aggregation = "gauge"
events = [{ type = "sms.sent" }, { type = "contact.deleted", effect = "remove" }]
[meters.balance]
aggregation = "balance"
events = [{ type = "sms.credits_added" }, { type = "sms.sent", effect = "remove" }]
""",
        source="all.toml",
    )
    acct = Account("a", "all")
    sms = event(EventType.SMS_SENT, "2026-11-23T10:00:00Z", contact="c", quantity=4)
    month = period_of(PeriodKind.CALENDAR_MONTH, sms.time_ms, "Europe/Paris")
    day = period_of(PeriodKind.DAY, sms.time_ms, "Europe/Paris")
    assert contributions(sms, acct, it) == [
        Contribution("count", "d2026-11-23", Aggregation.COUNT, 1, period_start_ms=day.start_ms),
        Contribution("sum", "2026-11", Aggregation.SUM, 4, period_start_ms=month.start_ms),
        Contribution(
            "distinct", "2026-11", Aggregation.DISTINCT, member="c", period_start_ms=month.start_ms
        ),
        Contribution(
            "distinct_all", "2026-11", Aggregation.DISTINCT, member="c", period_start_ms=0
        ),
        Contribution("gauge", NO_PERIOD, Aggregation.GAUGE, member="c", present=True),
        Contribution("balance", NO_PERIOD, Aggregation.BALANCE, -4),
    ]
    deleted = event(EventType.CONTACT_DELETED, "2026-11-23T10:00:00Z", contact="c")
    assert contributions(deleted, acct, it) == [
        Contribution("gauge", NO_PERIOD, Aggregation.GAUGE, member="c", present=False)
    ]
    topup = event(EventType.SMS_CREDITS_ADDED, "2026-11-23T10:00:00Z", quantity=10)
    assert contributions(topup, acct, it) == [
        Contribution("balance", NO_PERIOD, Aggregation.BALANCE, 10)
    ]
    assert (
        contributions(
            event(EventType.SEARCH_VIEWED, "2026-11-23T10:00:00Z", surface="page"), acct, it
        )
        == []
    )


def test_filters_select_meters() -> None:
    acct = account(ACTITO, contract_date=date(2025, 3, 15))
    e = event(EventType.CAMPAIGN_INTERACTION, "2026-11-23T10:00:00Z", contact="p", channel="social")
    assert [c.meter for c in contributions(e, acct, ACTITO)] == [
        "interactions",
        "interactions_social",
    ]


def test_suppression_facts() -> None:
    t = "2026-11-23T10:00:00Z"
    assert (
        suppression(event(EventType.CONTACT_SUPPRESSED, t, contact="x", reason="hard_bounce"))
        == "x"
    )
    assert suppression(event(EventType.CONTACT_UNSUBSCRIBED, t, contact="y")) == "y"
    assert suppression(event(EventType.CONTACT_DELETED, t, contact="z")) is None
    acton = PLANS["acton-active-contacts"]
    delta = fold_events(
        account(acton),
        acton,
        [
            event(
                EventType.CONTACT_SUPPRESSED,
                "2026-11-23T10:00:00Z",
                contact="x",
                reason="opted_out",
            ),
            event(EventType.CONTACT_UNSUBSCRIBED, "2026-11-01T10:00:00Z", contact="x"),
        ],
    )
    assert delta.suppressions == {"x": ms("2026-11-01T10:00:00Z")}
    assert delta.meters == {}
