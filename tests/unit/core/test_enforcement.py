"""Admission decisions in general (the seed-specific cases are in test_seed_*.py)."""

from __future__ import annotations

from metering.core.enforcement import (
    ADVISORY,
    EnforcementMode,
    EnforcementPolicy,
    GatedAction,
    Reason,
    decide_action,
    decide_add,
    decide_members,
    decide_prepaid,
    decide_use,
)
from metering.core.events import ContactOrigin

HARD = EnforcementPolicy(EnforcementMode.LIMIT)
NEW_MEMBERS = EnforcementPolicy(EnforcementMode.NEW_MEMBERS)


def test_hard_limit_allows_items_that_fit_and_refused_items_use_nothing() -> None:
    decisions = decide_use(HARD, used=95, limit=100, amounts=[3, 5, 2, 1])
    assert [d.allowed for d in decisions] == [True, False, True, False]
    assert decisions[1].reason is Reason.LIMIT_REACHED


def test_no_limit_allows_everything() -> None:
    assert decide_use(HARD, used=10**9, limit=None, amounts=[1])[0].reason is Reason.NO_LIMIT
    members = decide_members(
        NEW_MEMBERS, used=5, limit=None, counted=(), suppressed=(), members=["a"]
    )
    assert members[0].reason is Reason.NO_LIMIT
    assert decide_action(HARD, action=GatedAction.CAMPAIGN_SEND, used=1, limit=None).allowed


def test_advisory_never_blocks_anything() -> None:
    assert decide_use(ADVISORY, used=5, limit=1, amounts=[1])[0].allowed
    assert (
        decide_members(ADVISORY, used=5, limit=1, counted=(), suppressed=(), members=["a"])[
            0
        ].reason
        is Reason.ADVISORY_OVER_LIMIT
    )
    assert decide_add(ADVISORY, origin=ContactOrigin.IMPORT, used=5, limit=1, members=["a"])[
        0
    ].allowed
    assert (
        decide_action(ADVISORY, action=GatedAction.CAMPAIGN_SEND, used=5, limit=1).reason
        is Reason.NOT_GATED
    )


def test_new_members_in_one_request_count_once_and_in_order() -> None:
    decisions = decide_members(
        NEW_MEMBERS,
        used=8,
        limit=10,
        counted={"old"},
        suppressed=(),
        members=["a", "a", "old", "b", "c", "a"],
    )
    assert [(d.item, d.allowed) for d in decisions] == [
        ("a", True),
        ("a", True),
        ("old", True),
        ("b", True),
        ("c", False),
        ("a", True),
    ]


def test_limit_mode_blocks_new_members_too() -> None:
    decisions = decide_members(HARD, used=1, limit=1, counted=(), suppressed=(), members=["x"])
    assert not decisions[0].allowed


def test_ungated_actions_are_allowed() -> None:
    assert (
        decide_action(HARD, action=GatedAction.AUTOMATION_TRIGGER, used=5, limit=1).reason
        is Reason.NOT_GATED
    )


def test_unlisted_origins_stay_within_the_limit() -> None:
    assert not decide_add(HARD, origin=ContactOrigin.API, used=1, limit=1, members=["x"])[0].allowed


def test_prepaid_consumes_in_order() -> None:
    decisions = decide_prepaid(balance=5, amounts=[2, 2, 2, 1])
    assert [d.allowed for d in decisions] == [True, True, False, True]
    assert decide_prepaid(balance=0, amounts=[1])[0].reason is Reason.INSUFFICIENT_CREDITS
