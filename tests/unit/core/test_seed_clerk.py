"""Clerk.io "How Usage Is Measured" (seed 003)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from metering.core.events import EventType
from metering.core.tiers import place
from tests.unit.helpers import PLANS, account, event, run

PLAN = PLANS["clerk"]
ACCOUNT = account(PLAN)  # Europe/Copenhagen


def test_instant_dropdown_and_search_page_are_two_usages() -> None:
    events = [
        event(EventType.SEARCH_VIEWED, "2026-11-10T10:00:00Z", surface="instant"),
        event(EventType.SEARCH_VIEWED, "2026-11-10T10:00:05Z", surface="page"),
    ]
    assert run(PLAN, ACCOUNT, events).used("searches", "2026-11") == 2


def test_three_banners_on_the_home_page_are_three_usages_one_on_the_basket_page_one() -> None:
    home = event(EventType.RECOMMENDATION_VIEWED, "2026-11-10T10:00:00Z", quantity=3)
    basket = event(EventType.RECOMMENDATION_VIEWED, "2026-11-10T10:01:00Z")
    state = run(PLAN, ACCOUNT, [home])
    assert state.used("recommendation_views", "2026-11") == 3
    run(PLAN, ACCOUNT, [basket], state)
    assert state.used("recommendation_views", "2026-11") == 4


def test_300_emails_in_a_day_are_300_usages() -> None:
    events = [
        event(
            EventType.EMAIL_SENT,
            f"2026-11-10T{i // 60:02d}:{i % 60:02d}:00Z",
            contact=f"c{i}",
            kind="marketing",
        )
        for i in range(300)
    ]
    assert run(PLAN, ACCOUNT, events).used("emails_sent", "2026-11") == 300


def test_only_opens_of_emails_with_recommendation_snippets_count() -> None:
    events = [
        event(
            EventType.EMAIL_OPENED,
            "2026-11-10T10:00:00Z",
            contact=f"c{i}",
            with_recommendations=True,
        )
        for i in range(250)
    ]
    events.append(event(EventType.EMAIL_OPENED, "2026-11-10T10:00:00Z", contact="plain"))
    assert run(PLAN, ACCOUNT, events).used("snippet_opens", "2026-11") == 250


def test_audience_is_the_customers_imported() -> None:
    events = [
        event(EventType.CONTACT_ADDED, "2026-11-10T10:00:00Z", contact=f"c{i}", origin="import")
        for i in range(22)
    ]
    assert run(PLAN, ACCOUNT, events).used("audience_customers") == 22


@pytest.mark.parametrize(
    ("ladder", "monthly_average", "tier"),
    [
        ("search", 20_000, 25_000),
        ("recommendations", 200_000, 250_000),
        ("email", 40_000, 50_000),
        ("email_snippets", 40_000, 50_000),
        ("audience", 22_000, 25_000),
    ],
)
def test_the_seeds_tiers(ladder: str, monthly_average: int, tier: int) -> None:
    placement = place(PLAN.ladder(ladder), [monthly_average] * 3)
    assert placement.up_to == tier
    assert placement.average == monthly_average
    assert placement.complete


def test_a_temporary_overage_does_not_move_the_account() -> None:
    search = PLAN.ladder("search")
    assert place(search, [20_000, 20_000, 30_000]).up_to == 25_000  # average 23,333.33
    assert place(search, [30_000, 30_000, 30_000]).up_to == 50_000  # permanent


def test_only_the_last_three_closed_months_count() -> None:
    search = PLAN.ladder("search")
    placement = place(search, [90_000, 90_000, 20_000, 20_000, 20_000])
    assert placement.up_to == 25_000
    assert placement.months_used == 3


def test_tier_edges_are_exact() -> None:
    search = PLAN.ladder("search")
    assert place(search, [25_000, 25_000, 25_000]).up_to == 25_000
    edge = place(search, [25_000, 25_000, 25_001])
    assert edge.average == Fraction(75_001, 3)
    assert edge.up_to == 50_000


def test_fewer_than_three_closed_months_is_a_provisional_placement() -> None:
    placement = place(PLAN.ladder("email"), [40_000])
    assert (placement.up_to, placement.complete, placement.months_used) == (50_000, False, 1)
    assert place(PLAN.ladder("email"), []).up_to == 10_000


def test_above_every_tier_has_no_tier() -> None:
    assert place(PLAN.ladder("audience"), [200_000] * 3).up_to is None
