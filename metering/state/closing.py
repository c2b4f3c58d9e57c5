"""Keys and the argument layout of the period-close step (`lua/close_period.lua`).

Pure (no Redis): the closer decides in Python (metering.rollups), this module packs the decision
into the one JSON argument of the script, and `decode_close` reads its reply. Key names follow
ADR 0001 (every key of an account carries `{account}`); ADR 0004 lists the ones added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import orjson

from metering.state import keys

CLOSE_LEASE = "mtr:close:lease"
"""Held by the closer running a pass, so several processors do not all scan at once (a hint:
per-account claims and the script's checks keep overlapping passes correct)."""


def rollup_key(account: str, meter: str) -> str:
    """Hash period -> frozen total of one meter (kept `retention_days` after the last close)."""
    return f"{keys.account_prefix(account)}r:{meter}"


def placements_key(account: str) -> str:
    """Hash ladder -> last placement (JSON), and `as_of:<ladder>` -> its period key."""
    return f"{keys.account_prefix(account)}t"


def gauge_snapshot_key(account: str, meter: str) -> str:
    """Set of a ladder gauge's members at the end of its last closed month."""
    return f"{keys.account_prefix(account)}gs:{meter}"


def closed_through_key(account: str) -> str:
    """Every period of the account ending at or before this time (epoch ms) is closed: the
    apply step refuses to change one, whatever partition and watermark its event came with."""
    return f"{keys.account_prefix(account)}ct"


def close_claim_key(account: str) -> str:
    """Held by the one closer closing this account's periods."""
    return f"{keys.account_prefix(account)}cc"


@dataclass(frozen=True, slots=True)
class Freeze:
    """Freeze one period: its total into the rollup, its statement into the outbox."""

    meter: str
    period: str
    code: str
    """metering.rollups.Code: `c` counter, `d` distinct set, `m` gauge month."""
    expected: int
    """The total the closer computed; the script refuses to freeze anything else."""
    statement_id: str
    statement: bytes
    """The statement body (JSON), published as is."""
    open_field: str = ""
    """Field of the open-period index to remove ("" when the period had no data)."""


@dataclass(frozen=True, slots=True)
class TierWrite:
    """One placement, as of one closed period."""

    as_of: str
    record: bytes
    """JSON stored in the placements hash."""
    event_id: str = ""
    """"" when the placement did not change (stored, not published)."""
    event: bytes = b""


@dataclass(frozen=True, slots=True)
class LadderWrites:
    """Placements of one ladder, applied only if the stored one is still `expected_as_of`."""

    ladder: str
    expected_as_of: str | None
    writes: tuple[TierWrite, ...]


@dataclass(frozen=True, slots=True)
class CloseStep:
    """Everything one account's close does, applied atomically by the script."""

    account: str
    freezes: tuple[Freeze, ...]
    checks: tuple[tuple[str, str, int], ...] = ()
    """(meter, period, total) of rollups the placements used that were frozen earlier."""
    ladders: tuple[LadderWrites, ...] = ()
    expire_at_s: int = 0
    """Rollups, placements and snapshots expire then unless a later close refreshes them."""
    now_ms: int = 0
    """When the decision was taken (`at_ms` of the outbox entries, for the outbox age metric;
    never part of an event body, which depends on the totals only)."""
    closed_through_ms: int = 0
    """The account's watermark minus the grace: every period ending by then is closed once the
    step is done (stored forward only; 0 leaves it as it is)."""

    @property
    def empty(self) -> bool:
        return not self.freezes and not self.ladders


class CloseStatus(IntEnum):
    DONE = 0
    MISMATCH = 1
    """Something differed from what the closer read (another closer was faster, or a total
    moved): the script stopped before the differing write; re-read and plan again."""


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    status: CloseStatus
    outbox_length: int
    frozen: int
    statements: int
    tiers: int
    detail: str = ""


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
