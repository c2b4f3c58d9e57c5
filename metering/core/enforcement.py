"""Admission decisions: may this account do X now? Pure functions, one decision per item.

The state store knows the numbers (used, limit, which members are already counted, the
balance); these functions know the rules. Each returns a `Decision` per item (a contact, an SMS,
a unit of usage) with a stable reason code, because callers refuse single items (the 10,001st
new contact), not whole requests, and must say why.

Modes (`EnforcementMode`), one per seed model:

- `advisory`: never blocks; the reason says whether the limit is already exceeded (Actito:
  "exceeding this limit will not prevent you from creating new interactions"; APSIS; Clerk.io).
- `new_members`: a distinct meter refuses members that are new this period once the limit is
  reached; members already counted this period stay allowed, and members suppressed before
  the period started do not count (Act-On active contacts).
- `limit`: usage that would go over the limit is refused; adding members is decided per origin
  (`origins`): always, one by one while within the limit, or all or nothing for a whole batch
  (a CSV import); other actions stop at a ratio of the limit (`gates`), a higher one when the
  contacts come in through the API (ActiveCampaign).
- `prepaid`: a balance meter; an item of N units is allowed when the balance covers it (SMS).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

from metering.core.events import ContactOrigin


class EnforcementMode(StrEnum):
    ADVISORY = "advisory"
    NEW_MEMBERS = "new_members"
    LIMIT = "limit"
    PREPAID = "prepaid"


class AddRule(StrEnum):
    """How adding a member through one origin is decided in `limit` mode."""

    ALLOW = "allow"
    """Always accepted, even past the limit (ActiveCampaign: API and forms)."""
    WITHIN_LIMIT = "within_limit"
    """Each member accepted only while the level stays within the limit (ActiveCampaign: the
    admin's "add contact")."""
    ALL_OR_NOTHING = "all_or_nothing"
    """The request's new members are accepted together when all of them fit within the limit,
    else none is (ActiveCampaign: "you cannot add new contacts via CSV import if that would
    exceed the limit"): an import is one batch, never cut in two."""


class GatedAction(StrEnum):
    """Actions that stop when a meter's level is too high (ActiveCampaign)."""

    CAMPAIGN_CREATE = "campaign.create"
    CAMPAIGN_SEND = "campaign.send"
    AUTOMATION_TRIGGER = "automation.trigger"


@dataclass(frozen=True, slots=True)
class Gate:
    """`action` is refused once `used >= limit x stop_at` (`stop_at_via_api` for API accounts)."""

    action: GatedAction
    stop_at: Fraction = Fraction(1)
    stop_at_via_api: Fraction | None = None

    def ceiling(self, *, via_api: bool) -> Fraction:
        if via_api and self.stop_at_via_api is not None:
            return self.stop_at_via_api
        return self.stop_at


@dataclass(frozen=True, slots=True)
class EnforcementPolicy:
    """What a meter's limit does to new usage."""

    mode: EnforcementMode = EnforcementMode.ADVISORY
    origins: Mapping[ContactOrigin, AddRule] = field(default_factory=lambda: MappingProxyType({}))
    """`limit` mode: how adds are decided per origin; unlisted origins are WITHIN_LIMIT."""
    gates: tuple[Gate, ...] = ()

    def gate(self, action: GatedAction) -> Gate | None:
        for gate in self.gates:
            if gate.action is action:
                return gate
        return None


ADVISORY = EnforcementPolicy()


class Reason(StrEnum):
    """Stable reason codes of decisions (API responses, metric labels)."""

    NO_LIMIT = "no_limit"
    WITHIN_LIMIT = "within_limit"
    ADVISORY_OVER_LIMIT = "advisory_over_limit"
    ALREADY_COUNTED = "already_counted"
    SUPPRESSED_NOT_COUNTED = "suppressed_not_counted"
    ORIGIN_ALWAYS_ALLOWED = "origin_always_allowed"
    NOT_GATED = "not_gated"
    CREDITS_AVAILABLE = "credits_available"
    LIMIT_REACHED = "limit_reached"
    NEW_MEMBER_OVER_LIMIT = "new_member_over_limit"
    CEILING_REACHED = "ceiling_reached"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    BATCH_OVER_LIMIT = "batch_over_limit"
    """An all-or-nothing batch (an import) whose new members do not all fit: none admitted."""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    item: str | None = None
    """The member the decision is about, when items are members."""


def _within(used: int, limit: int | None, advisory: bool) -> tuple[bool, Reason]:
    """Decision for a level `used` that would result from allowing an item."""
    if limit is None:
        return True, Reason.NO_LIMIT
    if used <= limit:
        return True, Reason.WITHIN_LIMIT
    if advisory:
        return True, Reason.ADVISORY_OVER_LIMIT
    return False, Reason.LIMIT_REACHED


def decide_use(
    policy: EnforcementPolicy, *, used: int, limit: int | None, amounts: Iterable[int]
) -> list[Decision]:
    """Items of usage (`amounts`, in order) on a counter/sum meter at `used` of `limit`.

    In `limit` mode an item is allowed when the usage after it stays within the limit; refused
    items do not consume anything, so a later, smaller item may still fit.
    """
    advisory = policy.mode is EnforcementMode.ADVISORY
    decisions = []
    for amount in amounts:
        allowed, reason = _within(used + amount, limit, advisory)
        if allowed:
            used += amount
        decisions.append(Decision(allowed, reason))
    return decisions


def decide_members(
    policy: EnforcementPolicy,
    *,
    used: int,
    limit: int | None,
    counted: Container[str],
    suppressed: Container[str],
    members: Sequence[str],
) -> list[Decision]:
    """Sending to `members` on a distinct meter (Act-On active contacts).

    `counted`: members already counted this period (always allowed: "you can still send as many
    messages as you like to your currently active contacts"). `suppressed`: members suppressed
    before the period started; they never count, so they never use up the limit. A new member
    is allowed while fewer than `limit` members are counted, the request's own new members
    included; a member repeated in the request counts once.
    """
    advisory = policy.mode is EnforcementMode.ADVISORY
    decisions = []
    admitted: set[str] = set()
    for member in members:
        if member in counted or member in admitted:
            decisions.append(Decision(True, Reason.ALREADY_COUNTED, member))
        elif member in suppressed:
            decisions.append(Decision(True, Reason.SUPPRESSED_NOT_COUNTED, member))
        else:
            allowed, reason = _within(used + 1, limit, advisory)
            if allowed:
                used += 1
                admitted.add(member)
            else:
                reason = Reason.NEW_MEMBER_OVER_LIMIT
            decisions.append(Decision(allowed, reason, member))
    return decisions


def decide_add(
    policy: EnforcementPolicy,
    *,
    origin: ContactOrigin,
    used: int,
    limit: int | None,
    members: Sequence[str],
) -> list[Decision]:
    """Adding new `members` to a gauge (contacts) through `origin` (ActiveCampaign).

    Origins with `AddRule.ALLOW` are always accepted (API, forms); the others only while the
    level after the add stays within the limit (CSV import, the admin's "add contact").
    """
    rule = policy.origins.get(origin, AddRule.WITHIN_LIMIT)
    hard = policy.mode is not EnforcementMode.ADVISORY
    decisions = []
    for member in members:
        if hard and rule is AddRule.ALLOW:
            reason = Reason.ORIGIN_ALWAYS_ALLOWED if limit is not None else Reason.NO_LIMIT
            decisions.append(Decision(True, reason, member))
            used += 1
            continue
        allowed, reason = _within(used + 1, limit, not hard)
        if allowed:
            used += 1
        decisions.append(Decision(allowed, reason, member))
    return decisions


def decide_batch(policy: EnforcementPolicy, *, used: int, limit: int | None, new: int) -> Decision:
    """An all-or-nothing batch of `new` new members on a gauge at `used` of `limit`.

    Allowed when `used + new` stays within the limit (101 new contacts into an empty account
    limited to 100: refused, `fits` says 100); advisory meters allow and say when it goes over.
    """
    allowed, reason = _within(used + new, limit, policy.mode is EnforcementMode.ADVISORY)
    return Decision(allowed, reason if allowed else Reason.BATCH_OVER_LIMIT)


def fits(used: int, limit: int | None) -> int | None:
    """How many more units (members, e-mails) fit under `limit` at `used` (None: no limit)."""
    return None if limit is None else max(0, limit - used)


def decide_action(
    policy: EnforcementPolicy,
    *,
    action: GatedAction,
    used: int,
    limit: int | None,
    via_api: bool = False,
) -> Decision:
    """May `action` run while the meter is at `used` of `limit`?

    ActiveCampaign: campaigns cannot be created or sent and automations stop once the contact
    limit is reached (`stop_at` = 1), or once 110% is reached when the contacts come in through
    the API (`stop_at_via_api` = 11/10).
    """
    gate = policy.gate(action)
    if gate is None or policy.mode is not EnforcementMode.LIMIT:
        return Decision(True, Reason.NOT_GATED)
    if limit is None:
        return Decision(True, Reason.NO_LIMIT)
    ceiling = gate.ceiling(via_api=via_api)
    if used * ceiling.denominator >= limit * ceiling.numerator:
        return Decision(False, Reason.CEILING_REACHED)
    return Decision(True, Reason.WITHIN_LIMIT)


def decide_prepaid(*, balance: int, amounts: Iterable[int]) -> list[Decision]:
    """Items that consume a prepaid balance (SMS credits): allowed while the balance covers them."""
    decisions = []
    for amount in amounts:
        if amount <= balance:
            balance -= amount
            decisions.append(Decision(True, Reason.CREDITS_AVAILABLE))
        else:
            decisions.append(Decision(False, Reason.INSUFFICIENT_CREDITS))
    return decisions
