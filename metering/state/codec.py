"""The codec of the Lua steps: core values -> script arguments, script replies -> core values.

Pure (no Redis): the argument layouts are documented in `lua/apply.lua` and
`lua/close_period.lua` and unit-tested without Redis. Callers of the store only ever see the
core values (`metering.core.ports`), never a reply's letters or status codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from metering.core.deltas import Aggregation
from metering.core.ports import (
    ApplyOutcome,
    ApplyStatus,
    ApplyStep,
    CloseOutcome,
    CloseStatus,
    CloseStep,
    GaugeAdmission,
    MemberVerdict,
    MeterRule,
)
from metering.state import keys

_AGG_CODE = {
    Aggregation.COUNT: "c",
    Aggregation.SUM: "c",
    Aggregation.BALANCE: "b",
    Aggregation.DISTINCT: "d",
    Aggregation.GAUGE: "g",
}


_UNLIMITED = MeterRule(limit=None)


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
                meter.time_ms,
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
    if delta.holds:
        payload.append(
            [[hold, f"{m}:{p}", units] for (hold, m, p), units in delta.holds.items()]
        )
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


def encode_close(step: CloseStep) -> tuple[str, bytes]:
    """(open-period index key, the step as one JSON argument) for `lua/close_period.lua`."""
    payload = [
        keys.account_prefix(step.account),
        step.expire_at_s,
        step.now_ms,
        [
            [
                f.meter,
                f.period,
                f.code,
                f.expected,
                f.statement_id,
                f.statement.decode(),
                f.open_field,
            ]
            for f in step.freezes
        ],
        [[meter, period, total] for meter, period, total in step.checks],
        [
            [
                lad.ladder,
                lad.expected_as_of or "",
                [[w.as_of, w.record.decode(), w.event_id, w.event.decode()] for w in lad.writes],
            ]
            for lad in step.ladders
        ],
        step.closed_through_ms,
    ]
    return keys.open_periods_key(step.account), orjson.dumps(payload)


def decode_close(reply: object) -> CloseOutcome:
    """The script's reply: {status, outbox length, frozen, statements, tiers[, detail]}."""
    if not isinstance(reply, list) or len(reply) < 5:
        raise ValueError(f"unexpected close reply: {reply!r}")
    detail = reply[5] if len(reply) > 5 else b""
    return CloseOutcome(
        status=CloseStatus(int(reply[0])),
        outbox_length=int(reply[1]),
        frozen=int(reply[2]),
        statements=int(reply[3]),
        tiers=int(reply[4]),
        detail=detail.decode() if isinstance(detail, bytes) else str(detail),
    )


_VERDICTS = {v.value: v for v in MemberVerdict}


def decode_gauge_admission(reply: Sequence[object]) -> GaugeAdmission:
    """The gauge admission script's reply (lua/admit_gauge.lua) as a core value."""
    size, held, new, verdict, flags = reply
    letters = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
    marks = flags.decode() if isinstance(flags, bytes) else str(flags)
    if letters not in ("a", "r", "-") or set(marks) - {"p", "n", "d"}:
        raise ValueError(f"unexpected gauge admission reply: {letters!r} {marks[:50]!r}")
    return GaugeAdmission(
        size=int(str(size)),
        held=int(str(held)),
        new=int(str(new)),
        present=tuple(m == "p" for m in marks),
        repeated=tuple(m == "d" for m in marks),
        admitted=None if letters == "-" else letters == "a",
    )


def decode_admission(codes: str) -> tuple[MemberVerdict, ...]:
    """The admission script's per-member letters as verdicts, in the members' order."""
    try:
        return tuple(_VERDICTS[c] for c in codes)
    except KeyError as exc:
        raise ValueError(f"unexpected admission reply: {codes[:50]!r}") from exc
