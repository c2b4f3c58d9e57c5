"""ActiveCampaign "Wat gebeurt er als ik mijn contactlimiet bereik?" (seed 002, Dutch)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from metering.core.accounts import effective_limit
from metering.core.enforcement import (
    AddRule,
    GatedAction,
    Reason,
    decide_action,
    decide_add,
    decide_batch,
    fits,
)
from metering.core.events import ContactOrigin, EventType
from metering.core.periods import DAY_MS
from metering.core.status import State, status
from metering.core.thresholds import (
    Colour,
    crossing_scope,
    next_reminder_ms,
    reminder_id,
    reminders_due,
)
from tests.unit.helpers import PLANS, account, event, run

PLAN = PLANS["activecampaign-lite"]
ACCOUNT = account(PLAN)
CONTACTS = PLAN.meter("contacts")
POLICY = CONTACTS.enforcement
LIMIT = 2_500


def add(origin: ContactOrigin, used: int, count: int = 1) -> list[bool]:
    decisions = decide_add(
        POLICY, origin=origin, used=used, limit=LIMIT, members=[f"n{i}" for i in range(count)]
    )
    return [d.allowed for d in decisions]


def test_contacts_are_a_level_added_and_deleted() -> None:
    events = [
        event(EventType.CONTACT_ADDED, "2026-11-01T10:00:00Z", contact="a", origin="api"),
        event(EventType.CONTACT_ADDED, "2026-11-01T10:00:00Z", contact="b", origin="form"),
        event(EventType.CONTACT_DELETED, "2026-11-02T10:00:00Z", contact="a"),
    ]
    assert run(PLAN, ACCOUNT, events).used("contacts") == 1
    assert effective_limit(ACCOUNT, PLAN, "contacts", "") == LIMIT


def test_api_adds_continue_past_the_limit() -> None:
    assert add(ContactOrigin.API, used=LIMIT, count=3) == [True, True, True]
    decision = decide_add(
        POLICY, origin=ContactOrigin.API, used=LIMIT * 2, limit=LIMIT, members=["x"]
    )[0]
    assert decision.reason is Reason.ORIGIN_ALWAYS_ALLOWED


def test_forms_are_always_accepted() -> None:
    assert add(ContactOrigin.FORM, used=LIMIT + 500) == [True]


def test_a_csv_import_that_would_exceed_the_limit_is_refused_whole() -> None:
    # "Je kunt geen nieuwe contacten toevoegen via CSV-import als je daarmee de limiet
    # overschrijdt": the import is one batch, admitted all or nothing.
    assert POLICY.origins[ContactOrigin.IMPORT] is AddRule.ALL_OR_NOTHING
    refused = decide_batch(POLICY, used=LIMIT - 2, limit=LIMIT, new=5)
    assert (refused.allowed, refused.reason) == (False, Reason.BATCH_OVER_LIMIT)
    assert fits(LIMIT - 2, LIMIT) == 2
    admitted = decide_batch(POLICY, used=LIMIT - 5, limit=LIMIT, new=5)
    assert (admitted.allowed, admitted.reason) == (True, Reason.WITHIN_LIMIT)
    assert not decide_batch(POLICY, used=LIMIT, limit=LIMIT, new=1).allowed
    assert decide_batch(POLICY, used=LIMIT, limit=LIMIT, new=0).allowed  # nothing new


def test_manual_add_contact_is_refused_at_the_limit() -> None:
    assert add(ContactOrigin.MANUAL, used=LIMIT - 1) == [True]
    assert add(ContactOrigin.MANUAL, used=LIMIT) == [False]


@pytest.mark.parametrize("action", list(GatedAction))
def test_campaigns_and_automations_stop_once_the_limit_is_reached(action: GatedAction) -> None:
    assert decide_action(POLICY, action=action, used=LIMIT - 1, limit=LIMIT).allowed
    refused = decide_action(POLICY, action=action, used=LIMIT, limit=LIMIT)
    assert not refused.allowed
    assert refused.reason is Reason.CEILING_REACHED


@pytest.mark.parametrize("action", list(GatedAction))
def test_with_api_contacts_the_limit_may_be_exceeded_by_10_percent_first(
    action: GatedAction,
) -> None:
    # 110% of 2,500 is 2,750
    assert decide_action(POLICY, action=action, used=2_749, limit=LIMIT, via_api=True).allowed
    assert not decide_action(POLICY, action=action, used=2_750, limit=LIMIT, via_api=True).allowed


def test_status_reached_is_red_and_api_overage_is_reported() -> None:
    assert status(LIMIT, LIMIT, CONTACTS.thresholds).colour is Colour.RED
    assert status(LIMIT, LIMIT, CONTACTS.thresholds).state is State.AT_LIMIT
    assert status(LIMIT + 1, LIMIT, CONTACTS.thresholds).state is State.OVER
    assert status(2_750, LIMIT, CONTACTS.thresholds).reached == (
        "approaching",
        "reached",
        "api_overage",
    )
    assert status(2_000, LIMIT, CONTACTS.thresholds).colour is Colour.YELLOW


def test_an_email_every_15_days_while_approaching_until_upgraded() -> None:
    approaching = CONTACTS.thresholds[0]
    assert approaching.remind_every_ms == 15 * DAY_MS
    crossed_at = 1_000 * DAY_MS
    every = approaching.remind_every_ms
    assert reminders_due(crossed_at, every, crossed_at + 14 * DAY_MS) == 0
    assert reminders_due(crossed_at, every, crossed_at + 15 * DAY_MS) == 1
    assert reminders_due(crossed_at, every, crossed_at + 31 * DAY_MS) == 2
    assert next_reminder_ms(crossed_at, every, crossed_at + 16 * DAY_MS) == crossed_at + 30 * DAY_MS
    assert reminder_id("x", 1) != reminder_id("x", 2)
    assert reminder_id("x", 1) == reminder_id("x", 1)
    # "until you have upgraded": the upgrade raises the limit, the threshold is no longer
    # reached, and the sender stops; a new limit is a new crossing scope (re-armed).
    upgraded = account(PLAN, limit_overrides=MappingProxyType({"contacts": 5_000}))
    new_limit = effective_limit(upgraded, PLAN, "contacts", "")
    assert new_limit == 5_000
    assert approaching.reached(2_100, LIMIT)
    assert not approaching.reached(2_100, new_limit)
    assert crossing_scope("", LIMIT) != crossing_scope("", new_limit)
