"""Clerk.io "How Usage Is Measured" (seed 003)."""

from __future__ import annotations

from fractions import Fraction
from types import MappingProxyType

import pytest

from metering.core.account_codec import account_from_json, account_to_json
from metering.core.accounts import check_account
from metering.core.errors import AccountError
from metering.core.events import EventType
from metering.core.rollups import fraction_text
from metering.core.tiers import place, tier_mismatches
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


# --- "if you are on the wrong tier, your Customer Success Manager will reach out" ----------


def record(totals: list[int], months: list[str], *, window: int = 3) -> dict[str, object]:
    """What the closer stores for a ladder (rollups.placement_record), from closed months."""
    placement = place(PLAN.ladder("search"), totals)
    recent = list(zip(months, totals, strict=True))[-window:]
    return {
        "as_of": months[-1],
        "up_to": placement.up_to,
        "average": fraction_text(placement.average),
        "months_used": placement.months_used,
        "complete": placement.complete,
        "months": [{"period": p, "total": t} for p, t in recent],
    }


MONTHS = ["2026-08", "2026-09", "2026-10"]


def test_paying_up_to_25000_while_searching_30000_a_month_is_the_wrong_tier() -> None:
    placements = {"search": record([30_000, 30_000, 30_000], MONTHS)}
    [mismatch] = tier_mismatches("shop", {"search": 25_000}, PLAN.ladders, placements)
    assert (mismatch.paid_up_to, mismatch.placed_up_to, mismatch.direction) == (
        25_000,
        50_000,
        "up",
    )
    assert mismatch.average == 30_000
    assert mismatch.as_of == "2026-10"
    assert [(m.period, m.total) for m in mismatch.months] == [
        ("2026-08", 30_000),
        ("2026-09", 30_000),
        ("2026-10", 30_000),
    ]


def test_a_monthly_average_of_20000_searches_belongs_up_to_25000_not_in_a_bigger_tier() -> None:
    placements = {"search": record([20_000, 20_000, 20_000], MONTHS)}
    assert tier_mismatches("shop", {"search": 25_000}, PLAN.ladders, placements) == []
    [paying_too_much] = tier_mismatches("shop", {"search": 50_000}, PLAN.ladders, placements)
    assert (paying_too_much.placed_up_to, paying_too_much.direction) == (25_000, "down")


def test_a_temporary_overage_is_not_the_wrong_tier() -> None:
    # 20,000, 20,000, 30,000: average 23,333.33, still "up to 25,000"
    placements = {"search": record([20_000, 20_000, 30_000], MONTHS)}
    assert tier_mismatches("shop", {"search": 25_000}, PLAN.ladders, placements) == []


def test_fewer_than_three_closed_months_are_not_reported_yet() -> None:
    placements = {"search": record([30_000, 30_000], MONTHS[:2])}
    assert tier_mismatches("shop", {"search": 25_000}, PLAN.ladders, placements) == []


def test_above_every_tier_is_the_wrong_tier_upwards() -> None:
    placements = {"search": record([300_000] * 3, MONTHS)}
    [mismatch] = tier_mismatches("shop", {"search": 250_000}, PLAN.ladders, placements)
    assert (mismatch.placed_up_to, mismatch.direction) == (None, "up")


def test_only_ladders_the_account_pays_for_are_compared() -> None:
    placements = {"search": record([30_000] * 3, MONTHS)}
    assert tier_mismatches("shop", {"email": 50_000}, PLAN.ladders, placements) == []


def test_the_paid_tier_is_one_of_the_ladders_tiers() -> None:
    check_account(account(PLAN, paid_tiers=MappingProxyType({"search": 25_000})), PLAN)
    with pytest.raises(AccountError, match=r"paid_tiers\.search: 20000 is not a tier"):
        check_account(account(PLAN, paid_tiers=MappingProxyType({"search": 20_000})), PLAN)
    with pytest.raises(AccountError, match="has no ladder 'searches'"):
        check_account(account(PLAN, paid_tiers=MappingProxyType({"searches": 25_000})), PLAN)


def test_the_paid_tiers_round_trip_through_the_account_document() -> None:
    doc = {"id": "shop", "plan": "clerk", "paid_tiers": {"search": 25_000, "email": 50_000}}
    acct = account_from_json(doc)
    assert dict(acct.paid_tiers) == {"search": 25_000, "email": 50_000}
    assert account_to_json(acct) == doc
    with pytest.raises(AccountError, match=r"paid_tiers\.search: must be a tier bound"):
        account_from_json({**doc, "paid_tiers": {"search": "25000"}})
