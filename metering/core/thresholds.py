"""Thresholds on a meter's limit, crossing detection, crossing ids and reminder schedules.

A threshold is a ratio of the limit (`fractions.Fraction`, so 4/5 is exactly 80%) and is
compared in integers only: `used * den >= limit * num` (or `>` for a strict threshold). A
crossing is the step from below to at-or-above within one update; it is reported at most once
per (account, meter, period, threshold) because its id is derived from exactly those four
values and the state store keeps a mark per id, however the events were batched.

Strict thresholds express "exceeds" (Actito: red when usage *exceeds* the contract, i.e. used >
limit); non-strict ones express "reaches" (ActiveCampaign: campaigns stop once the limit is
*reached*). Nothing is ever reached while nothing is used, so a limit of 0 is exceeded by the
first use, never "at risk" before it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from metering.core.deltas import NO_PERIOD

CROSSING_NAMESPACE = uuid.UUID("6f1c1a9e-2f3c-5b7d-9a51-1d6c3f0e8b42")
"""uuid5 namespace of crossing ids: changing it would re-announce every crossing."""

class Colour(StrEnum):
    """Status colour (Actito's bullet points)."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A named ratio of a meter's limit."""

    name: str
    """Stable name (`at_risk`, `exceeded`): part of crossing ids and Redis keys."""
    ratio: Fraction
    strict: bool = False
    """True: crossed when usage is strictly above `ratio x limit` ("exceeds")."""
    colour: Colour = Colour.YELLOW
    """Colour of the status while at or above this threshold."""
    notify: bool = True
    """Whether a crossing should notify people (e-mail), not only update dashboards."""
    remind_every_ms: int | None = None
    """While still at or above: remind every this many ms (ActiveCampaign: 15 days)."""

    def reached(self, used: int, limit: int) -> bool:
        """Is `used` at (or strictly above, when strict) this threshold of `limit`?"""
        if used <= 0:
            return False
        lhs = used * self.ratio.denominator
        rhs = limit * self.ratio.numerator
        return lhs > rhs if self.strict else lhs >= rhs


AT_RISK = Threshold("at_risk", Fraction(4, 5), colour=Colour.YELLOW)
EXCEEDED = Threshold("exceeded", Fraction(1), strict=True, colour=Colour.RED)
DEFAULT_THRESHOLDS = (AT_RISK, EXCEEDED)
"""Actito's: yellow "at risk" from 80%, red when usage exceeds the limit."""


def crossed(
    before: int, after: int, limit: int, thresholds: Iterable[Threshold]
) -> list[Threshold]:
    """Thresholds that `after` reaches and `before` did not (in the given order)."""
    return [t for t in thresholds if t.reached(after, limit) and not t.reached(before, limit)]


def reached(used: int, limit: int, thresholds: Iterable[Threshold]) -> list[Threshold]:
    """Every threshold `used` is at or above."""
    return [t for t in thresholds if t.reached(used, limit)]


def crossing_scope(period_key: str, limit: int) -> str:
    """What a crossing is "once per": the period, or for unwindowed meters the limit.

    A gauge (contacts, profiles) has no period, so "once per threshold" would mean once ever.
    Scoping its crossings by the limit re-arms them when the account is upgraded (a new limit
    may be approached again) while a level going down and up under the same limit is still
    reported once.
    """
    return period_key if period_key != NO_PERIOD else f"L{limit}"


def crossing_id(account: str, meter: str, scope: str, threshold: str) -> str:
    """Deterministic id of a crossing (uuid5 of its four coordinates).

    `scope` is the period key, or `crossing_scope(...)` for unwindowed meters. Retries and
    replays produce the same id, so downstream consumers can deduplicate on it.
    """
    return _uuid5(f"{account}\x1f{meter}\x1f{scope}\x1f{threshold}")


_NAMESPACE_BYTES = CROSSING_NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """`str(uuid.uuid5(CROSSING_NAMESPACE, name))` without building a UUID object (the
    processor computes one per threshold of every new (account, meter, period); tested equal)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])  # noqa: S324
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def reminder_id(crossing: str, number: int) -> str:
    """Deterministic id of the `number`-th reminder (1-based) of a crossing."""
    return str(uuid.uuid5(CROSSING_NAMESPACE, f"{crossing}\x1freminder\x1f{number}"))


def reminders_due(crossed_at_ms: int, every_ms: int, now_ms: int) -> int:
    """How many reminders are due by `now_ms`: one every `every_ms` after the crossing.

    The reminder sender keeps the last number it sent and sends (one) reminder when this is
    higher, while the threshold is still reached for the current limit; an upgrade raises the
    limit, the threshold is no longer reached, and the reminders stop (ActiveCampaign: "every
    15 days until you have upgraded").
    """
    if every_ms <= 0:
        raise ValueError("every_ms must be positive")
    return max(0, (now_ms - crossed_at_ms) // every_ms)


def next_reminder_ms(crossed_at_ms: int, every_ms: int, now_ms: int) -> int:
    """When the next reminder after `now_ms` falls due."""
    return crossed_at_ms + (reminders_due(crossed_at_ms, every_ms, now_ms) + 1) * every_ms
