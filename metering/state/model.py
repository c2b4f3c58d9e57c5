"""Value types of the state store and the encoding of an apply step into script arguments.

Pure: the argument layout is documented in `lua/apply.lua` and unit-tested here without Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from metering.deltas import AccountDelta, Aggregation
from metering.state import keys

_AGG_CODE = {
    Aggregation.COUNT: "c",
    Aggregation.SUM: "c",
    Aggregation.BALANCE: "b",
    Aggregation.DISTINCT: "d",
    Aggregation.GAUGE: "g",
}


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A threshold as an exact fraction of the limit: reached when used > 0 and
    used * den >= limit * num (strictly greater when `strict`)."""

    name: str
    num: int
    den: int
    crossing_id: str
    """Deterministic id of this crossing (metering.thresholds.crossing_id)."""
    strict: bool = False


@dataclass(frozen=True, slots=True)
class MeterRule:
    """What the store needs to know about one (meter, period) besides the delta itself."""

    limit: int | None
    """Effective limit (plan, permanent change and temporary extension); None = unlimited."""
    thresholds: tuple[ThresholdRule, ...] = ()
    period_end_ms: int = 0
    expire_at_s: int = 0
    """When the counter may be dropped (period end + retention); 0 = never."""
    scope: str = ""
    """What a crossing is once per: the period key, or `L<limit>` for unwindowed meters."""
    wire: tuple[object, ...] = field(init=False, repr=False, compare=False)
    """The rule's part of a meter entry in the script's JSON, built once per rule: rules are
    cached per (account, meter, period) while steps are encoded per batch."""

    def __post_init__(self) -> None:
        thresholds = [
            [t.name, t.num, t.den, 1 if t.strict else 0, t.crossing_id] for t in self.thresholds
        ]
        wire = (
            self.period_end_ms,
            self.expire_at_s,
            -1 if self.limit is None else self.limit,
            self.scope,
            thresholds,
        )
        object.__setattr__(self, "wire", wire)


@dataclass(frozen=True, slots=True)
class ApplyStep:
    """One account's share of one partition batch, with the rules to apply it under."""

    delta: AccountDelta
    topic: str
    partition: int
    rules: Mapping[tuple[str, str], MeterRule]


_UNLIMITED = MeterRule(limit=None)


class ApplyStatus(IntEnum):
    """What the atomic step did (the values are the script's status codes)."""

    APPLIED = 0
    ALREADY_APPLIED = 1
    """The account fence covers the whole step: a replay after a crash; nothing written."""
    PARTIAL = 2
    """The fence lies inside the step's offsets: re-send only the events above `fence`."""
    DUPLICATES = 3
    """Some event ids are remembered: drop them and re-send; nothing written."""
    CLOSED = 4
    """Some (meter, period) of the step is closed (its total is frozen): send those events to
    the late topic, drop those contributions and re-send; nothing written."""


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """The result of one step."""

    status: ApplyStatus
    crossings: tuple[str, ...] = ()
    """Deterministic ids of the crossings this step put into the account's outbox."""
    outbox_length: int = 0
    fence: int = -1
    duplicates: tuple[str, ...] = field(default_factory=tuple)
    closed: tuple[tuple[str, str], ...] = ()
    """(meter, period) pairs of the step whose period is closed (status CLOSED)."""


def dedup_bucket_s(dedup_window_s: int) -> int:
    """Ids are kept in buckets of half the window; three are checked (see lua/apply.lua)."""
    return max(1, (dedup_window_s + 1) // 2)


def encode_step(
    step: ApplyStep, *, dedup_window_s: int, now_ms: int
) -> tuple[str, list[object]]:
    """Return (fence key, the step as the JSON-ready list `lua/apply.lua` reads)."""
    delta = step.delta
    account = delta.account
    meters: list[list[object]] = []
    for key, meter in delta.meters.items():
        rule = step.rules.get(key) or _UNLIMITED
        code = _AGG_CODE[meter.aggregation]
        members: list[object]
        if code == "g":
            members = [[m, 1 if present else 0] for m, present in meter.members.items()]
        else:
            members = list(meter.members)
        period_end, expire_at, limit, scope, thresholds = rule.wire
        meters.append(
            [
                meter.meter,
                meter.period,
                code,
                meter.amount,
                meter.period_start_ms,
                period_end,
                expire_at,
                limit,
                scope or meter.period,
                thresholds,
                members,
            ]
        )
    payload = [
        keys.account_prefix(account),
        account,
        delta.first_offset,
        delta.last_offset,
        dedup_bucket_s(dedup_window_s),
        now_ms,
        delta.event_ids,
        [[member, at_ms] for member, at_ms in delta.suppressions.items()],
        meters,
    ]
    return keys.fence_key(account, step.topic, step.partition), payload


_APPLIED_QUIETLY = ApplyOutcome(ApplyStatus.APPLIED)
"""The usual reply, [0, 0] (applied, no crossing): shared, since outcomes are immutable and a
steady load decodes about one per event."""


def decode_outcome(reply: object) -> ApplyOutcome:
    """Turn the script's reply (a list whose first item is the status) into an outcome."""
    if not isinstance(reply, list) or not reply:
        raise ValueError(f"unexpected apply reply: {reply!r}")
    if len(reply) == 2 and reply[0] == 0 and reply[1] == 0:
        return _APPLIED_QUIETLY
    status = ApplyStatus(int(reply[0]))
    if status is ApplyStatus.APPLIED:
        crossings = tuple(_text(x) for x in reply[2:])
        return ApplyOutcome(status, crossings=crossings, outbox_length=int(reply[1]))
    if status is ApplyStatus.ALREADY_APPLIED:
        return ApplyOutcome(status, outbox_length=int(reply[1]))
    if status is ApplyStatus.PARTIAL:
        return ApplyOutcome(status, fence=int(reply[1]))
    if status is ApplyStatus.CLOSED:
        flat = [_text(x) for x in reply[1]]
        return ApplyOutcome(status, closed=tuple(zip(flat[::2], flat[1::2], strict=True)))
    return ApplyOutcome(status, duplicates=tuple(_text(x) for x in reply[1]))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
