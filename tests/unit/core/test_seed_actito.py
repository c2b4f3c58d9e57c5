"""Actito "Monitoring License Usages" (seed 001)."""

from __future__ import annotations

from datetime import date
from types import MappingProxyType

import pytest

from metering.core.accounts import effective_limit
from metering.core.deltas import Aggregation
from metering.core.enforcement import Reason, decide_use
from metering.core.errors import EventRejected
from metering.core.events import Channel, EventType, LicenseResource, UsageEvent
from metering.core.meters import fold_events
from metering.core.periods import PeriodKind, period_of
from metering.core.plans import Effect
from metering.core.status import status
from metering.core.thresholds import DEFAULT_THRESHOLDS, Colour, crossing_id, crossing_scope
from tests.unit.helpers import PLANS, MemoryState, account, event, ms, run

PLAN = PLANS["actito-standard"]
CONTRACT = date(2025, 3, 15)
ACCOUNT = account(PLAN, contract_date=CONTRACT)  # Europe/Brussels
INTERACTIONS = PLAN.meter("interactions")


def interaction(
    channel: str, time: str = "2026-04-01T10:00:00Z", contact: str = "p1"
) -> UsageEvent:
    return event(
        EventType.CAMPAIGN_INTERACTION, time, contact=contact, channel=channel, campaign="c1"
    )


def test_max_interactions_is_max_profiles_times_average_interactions_per_profile() -> None:
    assert effective_limit(ACCOUNT, PLAN, "profiles", "") == 100_000
    assert effective_limit(ACCOUNT, PLAN, "interactions", "y2026-03-15") == 1_200_000
    more_profiles = account(
        PLAN, contract_date=CONTRACT, limit_overrides=MappingProxyType({"profiles": 150_000})
    )
    assert effective_limit(more_profiles, PLAN, "interactions", "y2026-03-15") == 1_800_000


def test_an_interaction_is_one_campaign_sent_to_one_profile_tracked_per_channel() -> None:
    events = [interaction(channel.value) for channel in Channel]
    events.append(interaction("marketing_email", contact="p2"))
    state = run(PLAN, ACCOUNT, events)
    key = "y2026-03-15"
    assert state.used("interactions", key) == 6
    assert state.used("interactions_marketing_email", key) == 2
    for channel in ("transactional_email", "print", "social", "call_center"):
        assert state.used(f"interactions_{channel}", key) == 1


def test_interactions_are_counted_per_billing_period_since_the_contract_date() -> None:
    assert INTERACTIONS.period is PeriodKind.BILLING_YEAR
    # Brussels is UTC+1 in March: the period turns at 2026-03-14T23:00Z
    before = interaction("print", "2026-03-14T22:59:59Z")
    after = interaction("print", "2026-03-14T23:00:00Z")
    state = run(PLAN, ACCOUNT, [before, after])
    assert state.used("interactions", "y2025-03-15") == 1
    assert state.used("interactions", "y2026-03-15") == 1
    since = period_of(
        PeriodKind.BILLING_YEAR, ms("2026-11-23T10:00:00Z"), "Europe/Brussels", CONTRACT
    )
    assert since.key == "y2026-03-15"  # "consumption since" 15 March 2026
    assert since.start_ms == ms("2026-03-14T23:00:00Z")
    assert since.end_ms == ms("2027-03-14T23:00:00Z")


@pytest.mark.parametrize(
    ("used", "colour"),
    [
        (0, Colour.GREEN),
        (959_999, Colour.GREEN),
        (960_000, Colour.YELLOW),  # exactly 80%: "at risk"
        (1_200_000, Colour.YELLOW),  # at the threshold, not exceeding it
        (1_200_001, Colour.RED),  # "exceeds the usage threshold"
    ],
)
def test_green_yellow_red(used: int, colour: Colour) -> None:
    assert status(used, 1_200_000, INTERACTIONS.thresholds).colour is colour


def test_at_risk_flag_exists_only_for_interactions_and_profiles() -> None:
    assert INTERACTIONS.thresholds == DEFAULT_THRESHOLDS
    assert PLAN.meter("profiles").thresholds == DEFAULT_THRESHOLDS
    goals = PLAN.meter("goal_interactions")
    assert [t.name for t in goals.thresholds] == ["exceeded"]
    assert status(1, 1, goals.thresholds).colour is Colour.GREEN
    assert status(2, 1, goals.thresholds).colour is Colour.RED
    yellow = {m.name for m in PLAN.meters if any(t.colour is Colour.YELLOW for t in m.thresholds)}
    assert yellow == {"interactions", "profiles"}


def test_exceeding_never_prevents_new_interactions() -> None:
    for name in ("interactions", "profiles", "goal_interactions"):
        decisions = decide_use(
            PLAN.meter(name).enforcement, used=5_000_000, limit=1_200_000, amounts=[1, 1000]
        )
        assert all(d.allowed for d in decisions)
        assert {d.reason for d in decisions} == {Reason.ADVISORY_OVER_LIMIT}


def test_admins_get_one_email_per_threshold_however_the_usage_arrives() -> None:
    small = account(
        PLAN, contract_date=CONTRACT, limit_overrides=MappingProxyType({"profiles": 1})
    )  # 12 interactions a year
    events = [interaction("print", f"2026-04-{day:02d}T10:00:00Z") for day in range(1, 21)]
    state = MemoryState()
    for start in range(0, 20, 3):  # daily calculations of 3 days each
        state.apply_checked(fold_events(small, PLAN, events[start : start + 3]), small, PLAN)
    interactions = [c for c in state.crossings if c[0] == "interactions"]
    assert interactions == [
        ("interactions", "y2026-03-15", "at_risk"),
        ("interactions", "y2026-03-15", "exceeded"),
    ]
    assert all(t.notify for t in INTERACTIONS.thresholds)
    again = crossing_id(small.id, "interactions", "y2026-03-15", "exceeded")
    assert again in state.marks  # the same id whoever computes it


def test_sms_campaigns_depend_on_provisioned_credits() -> None:
    events = [
        event(EventType.SMS_CREDITS_ADDED, "2026-04-01T10:00:00Z", quantity=500),
        event(EventType.SMS_SENT, "2026-04-02T10:00:00Z", contact="p1", quantity=2),
    ]
    assert run(PLAN, ACCOUNT, events).used("sms_credits") == 498


# --- the license sheet: resources counted while they exist, green or red -------------------

SHEET = {
    # Data Model: "The number of Profile tables / Custom tables / Subscriptions"
    "profile_tables": LicenseResource.PROFILE_TABLE,
    "custom_tables": LicenseResource.CUSTOM_TABLE,
    "subscriptions": LicenseResource.SUBSCRIPTION,
    # web: "active Website visits goals / active Transactional goals / active Forms"
    "website_goals": LicenseResource.WEBSITE_GOAL,
    "transactional_goals": LicenseResource.TRANSACTIONAL_GOAL,
    "forms": LicenseResource.FORM,
    # automation: "active Scenarios / Segmentation rules / Daily exports / Newsletters"
    "scenarios": LicenseResource.SCENARIO,
    "segmentation_rules": LicenseResource.SEGMENTATION_RULE,
    "daily_exports": LicenseResource.DAILY_EXPORT,
    "newsletters": LicenseResource.NEWSLETTER,
    # License settings: "active users / active API users / E-mail sending domains / Entities"
    "users": LicenseResource.USER,
    "api_users": LicenseResource.API_USER,
    "sending_domains": LicenseResource.SENDING_DOMAIN,
    "entities": LicenseResource.ENTITY,
}


def resource(kind: LicenseResource, rid: str, *, removed: bool = False) -> UsageEvent:
    event_type = EventType.RESOURCE_REMOVED if removed else EventType.RESOURCE_ADDED
    return event(event_type, "2026-04-01T10:00:00Z", resource=kind.value, resource_id=rid)


def test_every_resource_of_the_license_sheet_is_a_counted_resource_of_the_plan() -> None:
    assert set(SHEET.values()) == set(LicenseResource)
    for name, kind in SHEET.items():
        meter = PLAN.meter(name)
        assert meter.aggregation is Aggregation.GAUGE
        assert meter.member_field == "resource_id"
        assert {(m.type, m.where, m.effect) for m in meter.events} == {
            (EventType.RESOURCE_ADDED, (("resource", kind.value),), Effect.ADD),
            (EventType.RESOURCE_REMOVED, (("resource", kind.value),), Effect.REMOVE),
        }
        assert effective_limit(ACCOUNT, PLAN, name, "") is not None


def test_a_resource_counts_while_it_exists_once_however_often_it_is_reported() -> None:
    user = LicenseResource.USER
    events = [
        resource(user, "alice"),
        resource(user, "bob"),
        resource(user, "alice"),  # the daily calculation sees alice again: still one user
        resource(LicenseResource.API_USER, "alice"),  # another kind, another meter
        resource(user, "bob", removed=True),  # bob no longer has access
        resource(user, "carol", removed=True),  # never added: nothing to remove
    ]
    state = run(PLAN, ACCOUNT, events)
    assert state.used("users") == 1
    assert state.used("api_users") == 1


@pytest.mark.parametrize("name", sorted(SHEET))
def test_license_sheet_entries_are_green_or_red_never_at_risk(name: str) -> None:
    meter = PLAN.meter(name)
    limit = effective_limit(ACCOUNT, PLAN, name, "")
    assert limit is not None
    assert [(t.name, t.colour, t.strict) for t in meter.thresholds] == [
        ("exceeded", Colour.RED, True)
    ]
    # "Green means that you are below the prescribed usage threshold": at 80 % still green,
    # and at the package size (not exceeding it) too; "Red means that your usage exceeds".
    assert status(limit * 4 // 5, limit, meter.thresholds).colour is Colour.GREEN
    assert status(limit, limit, meter.thresholds).colour is Colour.GREEN
    assert status(limit + 1, limit, meter.thresholds).colour is Colour.RED


def test_the_package_size_is_the_accounts_own_and_exceeding_it_is_red_once() -> None:
    three_users = account(
        PLAN, contract_date=CONTRACT, limit_overrides=MappingProxyType({"users": 3})
    )
    events = [resource(LicenseResource.USER, f"u{i}") for i in range(5)]
    state = MemoryState()
    for start in range(0, 5, 2):  # daily calculations
        delta = fold_events(three_users, PLAN, events[start : start + 2])
        state.apply_checked(delta, three_users, PLAN)
    assert state.used("users") == 5
    # one e-mail per threshold: the only threshold of a license-sheet entry is "exceeded"
    scope = crossing_scope("", 3)
    assert [c for c in state.crossings if c[0] == "users"] == [("users", scope, "exceeded")]
    assert status(5, 3, PLAN.meter("users").thresholds).colour is Colour.RED


def test_exceeding_the_package_never_prevents_creating_resources() -> None:
    # "exceeding them will not prevent you from creating new resources in the related app"
    for name in SHEET:
        decisions = decide_use(PLAN.meter(name).enforcement, used=50, limit=3, amounts=[1])
        assert [d.reason for d in decisions] == [Reason.ADVISORY_OVER_LIMIT]
        assert decisions[0].allowed


def test_resource_events_name_a_known_kind_and_the_resource() -> None:
    with pytest.raises(EventRejected) as bad_kind:
        event(EventType.RESOURCE_ADDED, "2026-04-01T10:00:00Z", resource="robot", resource_id="r")
    assert bad_kind.value.field == "data.resource"
    assert "user, api_user, sending_domain" in bad_kind.value.detail
    with pytest.raises(EventRejected) as no_id:
        event(EventType.RESOURCE_REMOVED, "2026-04-01T10:00:00Z", resource="user")
    assert no_id.value.field == "data.resource_id"
