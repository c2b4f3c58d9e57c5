"""Redis key names and scan patterns: the one place Python spells them.

Every key of an account carries the hash tag `{account}` (Cluster-ready).
docs/decisions/0001-architecture-and-contracts.md lists the whole layout. The Lua scripts
build an account's keys from `account_prefix` passed in their arguments; dedup buckets
`mtr:{A}:d:<bucket>` exist only there, and crossing marks `mtr:{A}:x:<meter>:<scope>:<thr>`
are written there (lua/apply.lua) and read here by the reminder scheduler.
"""

from __future__ import annotations

OUTBOX_INDEX = "mtr:outbox:pending"
"""Set of accounts whose outbox may hold unpublished entries (a hint; a sweep backs it up)."""
STORE_MARKER = "mtr:store:initialised"
"""Written once the processor has applied anything: its absence next to a stored position-less
Redis tells a fresh store from one that lost its data."""
REBUILDING = "mtr:store:rebuilding"
"""Hash `<topic>:<partition>` -> the offset a partition's replay must reach after a Redis loss
(Kafka's committed offset when the loss was found). Written before the marker, deleted field by
field as replays catch up: while it exists, the API refuses to answer from partial counters."""


API_KEYS = "mtr:api-keys"
"""Hash: SHA-256 hex digest of an API token -> JSON record (id, scope, account, created)."""
HEALTH_PROBE = "mtr:api:write-probe"
"""Written by readiness checks (`readiness`) to learn whether Redis accepts writes."""
HEALTH_PROBE_TTL_MS = 10_000


def account_prefix(account: str) -> str:
    """`mtr:{account}:`: the prefix (and Cluster hash tag) of every key of one account."""
    return f"mtr:{{{account}}}:"


def account_of(key: str, suffix: str) -> str:
    """The account of an account key found by a scan (`mtr:{A}:<suffix>` -> `A`)."""
    return key[len("mtr:{") : -len("}:" + suffix)]


def fence_key(account: str, topic: str, partition: int) -> str:
    """Last offset of `topic`/`partition` applied for `account`."""
    return f"{account_prefix(account)}f:{topic}:{partition}"


def fence_pattern(topic: str) -> str:
    """Scan pattern of every account's fences for `topic` (is there any fence at all?)."""
    return f"mtr:{{*}}:f:{topic}:*"


def counter_key(account: str, meter: str, period: str) -> str:
    """Count/sum counter of one meter in one period."""
    return f"{account_prefix(account)}c:{meter}:{period}"


def distinct_key(account: str, meter: str, period: str) -> str:
    """Set of distinct members of one meter in one period."""
    return f"{account_prefix(account)}s:{meter}:{period}"


def gauge_key(account: str, meter: str) -> str:
    """Set of members present now (a gauge's level is its cardinality)."""
    return f"{account_prefix(account)}g:{meter}"


def holds_key(account: str, meter: str) -> str:
    """Sorted set of members whose places an admitted import holds on a gauge (score: the
    hold's end, epoch ms); see lua/admit_gauge.lua."""
    return f"{account_prefix(account)}h:{meter}"


def hold_expiry_key(account: str) -> str:
    """Sorted set of the account's admission holds (score: expiry, epoch ms); lua/holds.lua."""
    return f"{account_prefix(account)}hx"


def hold_records_key(account: str) -> str:
    """Hash hold id -> JSON `{"<meter>:<period>": units}` the hold still holds."""
    return f"{account_prefix(account)}hd"


def held_totals_key(account: str) -> str:
    """Hash `<meter>:<period>` -> units the account's live holds hold there (their sum)."""
    return f"{account_prefix(account)}ht"


def hold_keys(account: str) -> list[str]:
    """The three keys of lua/holds.lua, in its order."""
    return [hold_expiry_key(account), hold_records_key(account), held_totals_key(account)]


def balance_key(account: str, meter: str) -> str:
    """Prepaid balance."""
    return f"{account_prefix(account)}b:{meter}"


def updates_key(account: str) -> str:
    """Hash `meter:period` -> last update (epoch ms)."""
    return f"{account_prefix(account)}u"


def open_periods_key(account: str) -> str:
    """Hash `meter:period` -> period end (epoch ms) of periods with data."""
    return f"{account_prefix(account)}p"


OPEN_PERIODS_SUFFIX = "p"
OPEN_PERIODS_PATTERN = "mtr:{*}:p"
"""Scan pattern of every account's open-period index (the closer's sweep)."""


def outbox_key(account: str) -> str:
    """Stream of crossings decided for the account and not yet published."""
    return f"{account_prefix(account)}o"


OUTBOX_SUFFIX = "o"
OUTBOX_PATTERN = "mtr:{*}:o"
"""Scan pattern of every account's outbox (the publisher's sweep)."""


def publisher_shard_key(shard: int) -> str:
    """Held (with an expiry) by the one publisher sending the outboxes of this shard of the
    accounts; it then owns the shard's Kafka transactional id (sinks/outbox_publisher.py)."""
    return f"mtr:publisher:shard:{shard}"


def suppressions_key(account: str) -> str:
    """Hash member -> earliest suppression time (epoch ms)."""
    return f"{account_prefix(account)}sup"


def position_key(group: str, topic: str, partition: int) -> str:
    """Partition position reached by a consumer group (a resume hint; fences are the truth)."""
    return f"mtr:pos:{group}:{topic}:{partition}"


def watermark_key(group: str, topic: str, partition: int) -> str:
    """Event-time watermark (epoch ms) reached at the stored position of a partition."""
    return f"mtr:wm:{group}:{topic}:{partition}"


def applied_key(group: str, topic: str, partition: int) -> str:
    """When (epoch ms, the processor's clock) the stored position of a partition was last
    moved forward: with the watermark, how fresh that partition's counts are."""
    return f"mtr:ap:{group}:{topic}:{partition}"


# --- period close (ADR 0004) ---

CLOSE_LEASE = "mtr:close:lease"
"""Held by the closer running a pass, so several processors do not all scan at once (a hint:
per-account claims and the script's checks keep overlapping passes correct)."""


def rollup_key(account: str, meter: str) -> str:
    """Hash period -> frozen total of one meter (kept `retention_days` after the last close)."""
    return f"{account_prefix(account)}r:{meter}"


def placements_key(account: str) -> str:
    """Hash ladder -> last placement (JSON), and `as_of:<ladder>` -> its period key."""
    return f"{account_prefix(account)}t"


def gauge_snapshot_key(account: str, meter: str) -> str:
    """Set of a ladder gauge's members at the end of its last closed month."""
    return f"{account_prefix(account)}gs:{meter}"


def closed_through_key(account: str) -> str:
    """Every period of the account ending at or before this time (epoch ms) is closed: the
    apply step refuses to change one, whatever partition and watermark its event came with."""
    return f"{account_prefix(account)}ct"


def close_claim_key(account: str) -> str:
    """Held by the one closer closing this account's periods."""
    return f"{account_prefix(account)}cc"


# --- reminders (docs/plans.md, "Reminders") ---

REMINDER_LEASE = "mtr:remind:lease"
"""Held by the scheduler running a reminder pass (a hint: lua/remind.lua keeps overlapping
passes correct)."""


def crossing_mark_key(account: str, meter: str, scope: str, threshold: str) -> str:
    """Written by lua/apply.lua when the crossing is decided; value: when (epoch ms)."""
    return f"{account_prefix(account)}x:{meter}:{scope}:{threshold}"


def reminder_key(account: str, meter: str, scope: str, threshold: str) -> str:
    """Number of the last reminder sent for a crossing (same expiry as the crossing mark)."""
    return f"{account_prefix(account)}rm:{meter}:{scope}:{threshold}"


def idempotency_key(digest: str) -> str:
    """`mtr:idem:<sha256>`: the stored answer of one write, by the SHA-256 of the caller's
    credentials and `Idempotency-Key` (metering/api/idempotency.py); expires after its TTL."""
    return f"mtr:idem:{digest}"
