"""Ports: the Protocols the engines are typed against, and the values that cross them.

The processor (streams/processor.py), the closer (streams/period_close.py) and the outbox
publisher (sinks/outbox_publisher.py) talk to the state store, to Kafka's side outputs and to
each other only through these types, so that

- `streams/` and `sinks/` never import `metering.state` (Redis) or each other's engines;
- `metering/state/` implements them without knowing who calls (one module per client);
- tests and the backfill can put a fake or a stand-in behind the same Protocol without casts.

Everything here is pure (no Kafka, Redis or HTTP). The store's reply encodings (status codes,
the wire layout of a rule) are documented next to the Lua scripts; `MeterRule.wire` keeps a
rule's part of that layout precomputed because rules are cached while steps are encoded per
batch (ADR 0005), which is why a value type here knows its encoded form.

Values: `ThresholdRule`, `MeterRule`, `ApplyStep` -> `ApplyOutcome` (apply step);
`CloseStep` -> `CloseOutcome` (close step); `ReminderOutcome` (reminder step);
`MemberVerdict` (admission); `OutboxEntry`; `SourceRef`. The clock: `Clock`, `wall_clock_ms`.
Protocols: `ConsumedRecord`, `EventMapper`, `UsageStore` (processor; its `PositionStore`
part), `OutboxStore` (publisher), `CloseStore` (closer), `ReminderStore` (reminder scheduler),
`SideOutputs` (dead-letter and late records), `OutboxPublishing`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from metering.core.deltas import AccountDelta, Aggregation

if TYPE_CHECKING:
    from metering.core.fold import MappedEvent
    from metering.core.reminders import Reminder, ReminderCheck

# --- the apply step (lua/apply.lua) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """A threshold as an exact fraction of the limit: reached when used > 0 and
    used * den >= limit * num (strictly greater when `strict`)."""

    name: str
    num: int
    den: int
    crossing_id: str
    """Deterministic id of this crossing (metering.core.thresholds.crossing_id)."""
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


# --- the close step (lua/close_period.lua) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Freeze:
    """Freeze one period: its total into the rollup, its statement into the outbox."""

    meter: str
    period: str
    code: str
    """metering.core.rollups.Code: `c` counter, `d` distinct set, `m` gauge month."""
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


# --- reminders (lua/remind.lua) --------------------------------------------------------------


class ReminderStatus(IntEnum):
    """What the reminder step decided (the values are the script's status codes)."""

    SENT = 0
    """Put into the account's outbox; the crossing's last reminder number moved to it."""
    ALREADY_SENT = 1
    """This number or a later one was sent already (another scheduler, or a replay)."""
    BELOW = 2
    """The threshold is not reached now: nothing written, the reminder is held."""
    NO_CROSSING = 3
    """The crossing mark is gone or differs from what the scheduler read."""


@dataclass(frozen=True, slots=True)
class ReminderOutcome:
    status: ReminderStatus
    value: int
    """Outbox length (SENT), last number sent (ALREADY_SENT), usage (BELOW), else 0."""


# --- admission (lua/admit_members.lua) ---------------------------------------------------------


class MemberVerdict(StrEnum):
    """What the admission step decided for one member of a distinct meter (the values are the
    script's one-letter codes; only metering/state/codec.py reads those)."""

    COUNTED = "c"
    """Already counted this period."""
    SUPPRESSED = "s"
    """Suppressed, so not counted."""
    ADMITTED = "a"
    """New and within the limit (reserved when the step was asked to reserve)."""
    OVER_LIMIT = "o"
    """New and over the limit, evaluated without reserving (advisory, or a dry run)."""
    REFUSED = "r"
    """New and over the limit of an enforcing meter: refused, nothing reserved."""


@dataclass(frozen=True, slots=True)
class GaugeAdmission:
    """What the gauge admission step (lua/admit_gauge.lua) saw and did for one request."""

    size: int
    """Members present in the gauge (its level, as the processor applied it)."""
    held: int
    """Places still held by other admitted all-or-nothing batches (imports not yet applied)."""
    new: int
    """Distinct members of the request not present in the gauge."""
    present: tuple[bool, ...]
    """Per member of the request, in order: present already (a repeat of a new one is not)."""
    repeated: tuple[bool, ...]
    """Per member: a repeat, within the request, of a new member before it (counts once)."""
    admitted: bool | None
    """Whole mode: the batch was admitted and its places held (True) or refused (False);
    None when the step only read."""


# --- the outbox and side outputs -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One crossing (or statement, or tier placement) waiting in an account's outbox."""

    entry_id: str
    """The Redis stream entry id (for acknowledging)."""
    fields: dict[str, str]
    """`id`, `account`, `meter`, `period`, `threshold`, `num`, `den`, `limit`, `used`, ..."""


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record was read."""

    topic: str
    partition: int
    offset: int

    def header(self) -> bytes:
        return f"{self.topic}/{self.partition}/{self.offset}".encode()


# --- the clock -------------------------------------------------------------------------------

Clock = Callable[[], int]
"""Epoch milliseconds now. Engines take one (default `wall_clock_ms`) so that tests, the
benchmarks and the backfill decide what time it is."""


def wall_clock_ms() -> int:
    """The wall clock in epoch milliseconds: the one definition every room uses."""
    return time.time_ns() // 1_000_000


# --- Protocols -------------------------------------------------------------------------------


class ConsumedRecord(Protocol):
    """What the processor reads of a consumed Kafka record (aiokafka's `ConsumerRecord` has
    these and more; the backfill and tests pass their own)."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


class EventMapper(Protocol):
    """Turns a record's bytes into a `MappedEvent` or raises `EventRejected`."""

    def map(
        self, value: bytes | None, *, now_ms: int, watermark_ms: int, key: bytes | None = None
    ) -> MappedEvent:
        """Decode, validate and map; `watermark_ms` decides which periods have closed. `key`,
        the record's Kafka key, must name the event's subject when given (`key_mismatch`)."""
        ...


class SideOutputs(Protocol):
    """Where records that are not counted go: the dead-letter and late-events topics."""

    async def dead_letter(
        self,
        source: SourceRef,
        key: bytes | None,
        value: bytes | None,
        *,
        reason: str,
        field: str | None,
        detail: str,
    ) -> None:
        """Queue a rejected record with its reason."""
        ...

    async def late(
        self, source: SourceRef, key: bytes | None, value: bytes | None, *, meters: list[str]
    ) -> None:
        """Queue an event whose period had closed (for these meters) when it arrived."""
        ...

    async def flush(self) -> None:
        """Wait until every queued record is acknowledged."""
        ...


class OutboxPublishing(Protocol):
    """Publishes accounts' outboxes (sinks/outbox_publisher.py)."""

    async def publish_accounts(self, accounts: list[str]) -> int:
        """Publish every entry of these accounts' outboxes; returns how many were sent."""
        ...


class PositionStore(Protocol):
    """Partition positions (forward only), the store marker and replay targets: what tells a
    processor where to resume and whether the store is still the one it wrote to."""

    async def positions(
        self, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, tuple[int, int]]: ...

    async def advance_positions(
        self,
        group: str,
        topic: str,
        positions: Mapping[int, tuple[int, int]],
        *,
        applied_ms: int,
    ) -> None:
        """Store (offset, watermark ms) per partition, reached at `applied_ms`; forward only."""
        ...

    async def store_marker(self) -> str | None: ...

    async def marker_and_positions(
        self, group: str, topic: str, partitions: Sequence[int]
    ) -> tuple[str | None, dict[int, int]]: ...

    async def claim_store_marker(self, token: str) -> str: ...

    async def mark_rebuilding(self, topic: str, partition: int, until_offset: int) -> None: ...

    async def rebuilding_targets(
        self, topic: str, partitions: Sequence[int]
    ) -> dict[int, int]: ...

    async def finish_rebuilding(self, topic: str, partitions: Sequence[int]) -> None: ...


class UsageStore(PositionStore, Protocol):
    """What the processor needs of the store: apply steps, positions, the store marker."""

    async def apply(
        self, steps: Sequence[ApplyStep], *, dedup_window_s: int, now_ms: int
    ) -> list[ApplyOutcome]: ...

    async def has_fences(self, topic: str) -> bool: ...

    async def index_outboxes(self, accounts: Iterable[str]) -> None: ...


class OutboxStore(Protocol):
    """What the outbox publisher needs of the store."""

    async def index_outboxes(self, accounts: Iterable[str]) -> None: ...

    async def indexed_outboxes(self) -> list[str]: ...

    async def sweep_outboxes(self) -> list[str]: ...

    async def claim_publisher_shard(self, shard: int, owner: str, ttl_ms: int) -> bool: ...

    async def release_publisher_shard(self, shard: int, owner: str) -> None: ...

    async def read_outbox(self, account: str, count: int = 500) -> list[OutboxEntry]: ...

    async def ack_outbox(self, account: str, entry_ids: Sequence[str]) -> int: ...


class CloseStore(Protocol):
    """What the period closer needs of the store."""

    async def positions(
        self, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, tuple[int, int]]: ...

    async def index_outboxes(self, accounts: Iterable[str]) -> None: ...

    async def read_amounts(
        self, account: str, meters: Sequence[tuple[str, str, Aggregation]]
    ) -> dict[tuple[str, str], int]: ...

    async def open_accounts(self) -> list[str]: ...

    async def open_periods(self, accounts: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def fenced_partitions(
        self, accounts: Sequence[str], topic: str, partitions: Sequence[int]
    ) -> dict[str, list[int]]: ...

    async def rollups(self, account: str, meters: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def placements(self, account: str) -> dict[str, dict[str, Any]]: ...

    async def gauge_month_ops(
        self, account: str, meter: str, months: Sequence[str]
    ) -> list[set[str]]: ...

    async def gauge_snapshot(
        self, account: str, meter: str, members: Sequence[str]
    ) -> tuple[int, dict[str, bool]]: ...

    async def close_periods(self, step: CloseStep) -> CloseOutcome: ...

    async def claim_close(self, account: str, owner: str, ttl_ms: int = 60_000) -> bool: ...

    async def release_close(self, account: str, owner: str) -> None: ...

    async def take_close_lease(self, owner: str, ttl_ms: int) -> bool: ...

    async def release_close_lease(self, owner: str) -> None: ...


class ReminderStore(Protocol):
    """What the reminder scheduler needs of the store."""

    async def reminder_states(
        self, checks: Sequence[ReminderCheck]
    ) -> list[tuple[int | None, int]]:
        """Per check: when its crossing was decided (None: not crossed) and the number of the
        last reminder sent (0: none)."""
        ...

    async def send_reminder(self, reminder: Reminder, body: bytes, now_ms: int) -> ReminderOutcome:
        """Re-check and put one reminder into the account's outbox, atomically."""
        ...

    async def index_outboxes(self, accounts: Iterable[str]) -> None: ...

    async def take_reminder_lease(self, owner: str, ttl_ms: int) -> bool: ...

    async def release_reminder_lease(self, owner: str) -> None: ...
