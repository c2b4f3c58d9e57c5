"""The Redis state store: the only module that speaks Redis.

Used by the processor (apply steps, positions, outbox) and the API (usage reads, admission).
Every Redis library error is translated here into `StateStoreUnavailable` (retry),
`StateStoreRefusingWrites` (Redis answers but refuses writes: MISCONF, OOM, READONLY; retry too)
or `StateStoreError` (a bug or a misconfiguration), so callers never see `redis.*` exceptions.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.crc import key_slot

from metering.deltas import Aggregation
from metering.rollups import gauge_month_meter
from metering.state import closing, keys
from metering.state.errors import (
    StateStoreError,
    StateStoreRefusingWrites,
    StateStoreUnavailable,
)
from metering.state.model import ApplyOutcome, ApplyStep, decode_outcome, encode_step


def _load_script(name: str) -> str:
    return resources.files("metering.state").joinpath("lua", name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One crossing waiting in an account's outbox."""

    entry_id: str
    """The Redis stream entry id (for acknowledging)."""
    fields: dict[str, str]
    """`id`, `account`, `meter`, `period`, `threshold`, `num`, `den`, `limit`, `used`, ..."""


@asynccontextmanager
async def _translated(what: str) -> AsyncIterator[None]:
    """Translate redis-py errors raised inside the block into our own types."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise StateStoreUnavailable(f"Redis unavailable during {what}: {exc}") from exc
    except redis_errors.RedisError as exc:
        cause = _write_refusal(exc)
        if cause is not None:
            raise StateStoreRefusingWrites(
                f"Redis refuses writes ({cause}) during {what}: {exc}", cause
            ) from exc
        raise StateStoreError(f"Redis refused {what}: {exc}") from exc


_REFUSAL = re.compile(r"\b(MISCONF|OOM|READONLY)\b")


def _write_refusal(exc: redis_errors.RedisError) -> str | None:
    """The cause when `exc` is Redis refusing writes (`StateStoreRefusingWrites.CAUSES`).

    redis-py has classes for OOM and READONLY (whose messages lose the code) but not for
    MISCONF, and an error raised inside a script may reach us as text with the refusal's code
    further on: classes first, then the code in the message.
    """
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return StateStoreRefusingWrites.CAUSES["OOM"]
    if isinstance(exc, redis_errors.ReadOnlyError):
        return StateStoreRefusingWrites.CAUSES["READONLY"]
    if not isinstance(exc, redis_errors.ResponseError):
        return None
    found = _REFUSAL.search(str(exc))
    return None if found is None else StateStoreRefusingWrites.CAUSES[found.group(1)]


class RedisStateStore:
    """Counters, sets, fences, positions and outboxes of every account, in Redis."""

    def __init__(
        self, client: aioredis.Redis, *, cluster: bool = False, steps_per_call: int = 200
    ) -> None:
        self._client = client
        self._cluster = cluster
        self._steps_per_call = steps_per_call
        self._apply: AsyncScript = client.register_script(_load_script("apply.lua"))
        self._advance: AsyncScript = client.register_script(_load_script("advance_position.lua"))
        self._ack: AsyncScript = client.register_script(_load_script("ack_outbox.lua"))
        self._release: AsyncScript = client.register_script(_load_script("release.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_s: float = 5.0,
        cluster: bool = False,
        client_retries: int | None = None,
    ) -> RedisStateStore:
        """Connect lazily to `url` (redis:// or rediss://; credentials stay out of logs).

        `client_retries` 0 turns off redis-py's own reconnect-and-resend (10 tries by
        default): the processor retries itself and checks the store marker before it sends
        a write again, so a write is never silently re-sent to a Redis that came back empty.
        """
        options: dict[str, Any] = {}
        if client_retries is not None:
            options["retry"] = Retry(NoBackoff(), client_retries)
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            **options,
        )
        return cls(client, cluster=cluster)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def ping(self) -> None:
        """Raise `StateStoreUnavailable` unless Redis answers."""
        async with _translated("PING"):
            await self._client.ping()

    # -- processor: apply, positions, markers -------------------------------------------------

    async def apply(
        self, steps: Sequence[ApplyStep], *, dedup_window_s: int, now_ms: int
    ) -> list[ApplyOutcome]:
        """Apply every step in one round trip (a pipeline of script calls); each step is atomic.

        Steps are grouped into calls of at most `steps_per_call`: by hash slot when the store
        serves a Redis Cluster (a call touches one slot), across slots on a single Redis, where
        grouping makes the per-call cost (script dispatch, argument packing) shared by hundreds
        of accounts instead of paid by each.
        """
        if not steps:
            return []
        groups: dict[int, list[int]] = {}
        encoded = [encode_step(s, dedup_window_s=dedup_window_s, now_ms=now_ms) for s in steps]
        for index, (fence, _) in enumerate(encoded):
            group = key_slot(fence.encode()) if self._cluster else 0
            groups.setdefault(group, []).append(index)
        size = self._steps_per_call
        calls = [
            members[start : start + size]
            for members in groups.values()
            for start in range(0, len(members), size)
        ]
        async with _translated("apply"):
            pipe = self._client.pipeline(transaction=False)
            for call in calls:
                await self._apply(
                    keys=[encoded[i][0] for i in call],
                    args=[orjson.dumps([encoded[i][1] for i in call])],
                    client=pipe,
                )
            replies = await pipe.execute()
        outcomes: list[ApplyOutcome | None] = [None] * len(steps)
        for call, reply in zip(calls, replies, strict=True):
            for index, step_reply in zip(call, reply, strict=True):
                outcomes[index] = decode_outcome(step_reply)
        return [o for o in outcomes if o is not None]

    async def positions(
        self, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, tuple[int, int]]:
        """Stored (position, watermark ms) of the given partitions that have one."""
        parts = list(partitions)
        if not parts:
            return {}
        names = [keys.position_key(group, topic, p) for p in parts]
        names += [keys.watermark_key(group, topic, p) for p in parts]
        async with _translated("read positions"):
            values = await self._client.mget(names)
        found: dict[int, tuple[int, int]] = {}
        for i, partition in enumerate(parts):
            position, watermark = values[i], values[i + len(parts)]
            if position is not None:
                found[partition] = (int(position), int(watermark or 0))
        return found

    async def advance_positions(
        self, group: str, topic: str, positions: Mapping[int, tuple[int, int]]
    ) -> None:
        """Store (position, watermark) reached per partition; a position never moves back."""
        if not positions:
            return
        async with _translated("advance positions"):
            pipe = self._client.pipeline(transaction=False)
            for partition, (offset, watermark) in positions.items():
                names = [
                    keys.position_key(group, topic, partition),
                    keys.watermark_key(group, topic, partition),
                ]
                await self._advance(keys=names, args=[offset, watermark], client=pipe)
            await pipe.execute()

    async def mark_initialised(self) -> None:
        """Record that this store holds processed state (see `is_initialised`); never replaces
        a marker already there (running processors compare it with the one they started on)."""
        async with _translated("mark initialised"):
            await self._client.set(keys.STORE_MARKER, 1, nx=True)

    async def is_initialised(self) -> bool:
        """False on an empty Redis: a processor that expected state must rebuild or stop."""
        async with _translated("read marker"):
            return bool(await self._client.exists(keys.STORE_MARKER))

    async def store_marker(self) -> str | None:
        """The store marker's value, None when absent.

        A processor writes a random marker when it first uses a store and checks it before
        every write: Redis that restarted empty, was flushed or was swapped for another one has
        no marker (or another), which positions alone cannot tell once they were written again.
        """
        async with _translated("read store marker"):
            value = await self._client.get(keys.STORE_MARKER)
        return None if value is None else _text(value)

    async def marker_and_positions(
        self, group: str, topic: str, partitions: Sequence[int]
    ) -> tuple[str | None, dict[int, int]]:
        """The store marker and the stored positions of `partitions`, in one round trip (what
        a processor checks before every write: Redis neither emptied nor gone back in time)."""
        names = [keys.STORE_MARKER] + [keys.position_key(group, topic, p) for p in partitions]
        async with _translated("read store marker"):
            values = await self._client.mget(names)
        marker = None if values[0] is None else _text(values[0])
        stored = {p: int(v) for p, v in zip(partitions, values[1:], strict=True) if v is not None}
        return marker, stored

    async def mark_rebuilding(self, topic: str, partition: int, until_offset: int) -> None:
        """Record that `topic`/`partition` is being replayed after a Redis loss and must reach
        `until_offset` (exclusive) before the store is whole again."""
        async with _translated("mark rebuilding"):
            await self._client.hset(keys.REBUILDING, f"{topic}:{partition}", until_offset)

    async def rebuilding_targets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The replay targets still recorded for `partitions` (a processor that takes over a
        partition mid-rebuild, or restarts during one, carries on with them)."""
        if not partitions:
            return {}
        fields = [f"{topic}:{p}" for p in partitions]
        async with _translated("read rebuilding"):
            values = await self._client.hmget(keys.REBUILDING, fields)
        return {p: int(v) for p, v in zip(partitions, values, strict=True) if v is not None}

    async def finish_rebuilding(self, topic: str, partitions: Sequence[int]) -> None:
        """The replays of `partitions` reached their targets."""
        if not partitions:
            return
        async with _translated("finish rebuilding"):
            await self._client.hdel(keys.REBUILDING, *[f"{topic}:{p}" for p in partitions])

    async def readiness(self) -> tuple[str | None, int, str | None]:
        """(store marker, number of partitions still replaying after a loss, why writes are
        refused or None) in one round trip: what the API checks before answering.

        Writes are probed with a tiny SET (with a TTL) of `HEALTH_PROBE`, since a Redis that
        cannot persist (MISCONF), is full (OOM) or is a replica (READONLY) still answers reads;
        the cause is `StateStoreRefusingWrites.CAUSES`'s name. Other errors raise as usual.
        """
        async with _translated("read store readiness"):
            pipe = self._client.pipeline(transaction=False)
            pipe.set(HEALTH_PROBE, 1, px=HEALTH_PROBE_TTL_MS)
            pipe.get(keys.STORE_MARKER)
            pipe.hlen(keys.REBUILDING)
            probe, marker, rebuilding = await pipe.execute(raise_on_error=False)
            refusal = None
            if isinstance(probe, redis_errors.RedisError):
                refusal = _write_refusal(probe)
                if refusal is None:
                    raise probe
            for reply in (marker, rebuilding):
                if isinstance(reply, Exception):
                    raise reply
        return (None if marker is None else _text(marker)), int(rebuilding), refusal

    async def claim_store_marker(self, token: str) -> str:
        """Write `token` as the marker unless one exists; return the marker now in force."""
        async with _translated("write store marker"):
            await self._client.set(keys.STORE_MARKER, token, nx=True)
            value = await self._client.get(keys.STORE_MARKER)
        return _text(value)

    async def has_fences(self, topic: str) -> bool:
        """Whether any account has a fence for `topic` (SCAN, stops at the first found).

        Without a store marker and without positions, fences mean that a store lost its state
        and then received some writes: replaying over them would skip events below them.
        """
        async with _translated("scan fences"):
            async for _ in self._client.scan_iter(match=f"mtr:{{*}}:f:{topic}:*", count=1000):
                return True
        return False

    # -- outbox -------------------------------------------------------------------------------

    async def index_outboxes(self, accounts: Iterable[str]) -> None:
        """Note accounts whose outbox has entries, so the publisher finds them at once."""
        names = list(accounts)
        if names:
            async with _translated("index outboxes"):
                await self._client.sadd(keys.OUTBOX_INDEX, *names)

    async def indexed_outboxes(self) -> list[str]:
        """Accounts noted as having outbox entries."""
        async with _translated("read outbox index"):
            members = await self._client.smembers(keys.OUTBOX_INDEX)
        return sorted(_text(m) for m in members)

    async def sweep_outboxes(self) -> list[str]:
        """Find every non-empty outbox by scanning: recovers entries whose index note was lost."""
        found: list[str] = []
        async with _translated("sweep outboxes"):
            async for raw in self._client.scan_iter(match="mtr:{*}:o", count=1000, _type="stream"):
                key = raw.decode()
                found.append(key[len("mtr:{") : -len("}:o")])
        return sorted(found)

    async def claim_outbox(self, account: str, owner: str, ttl_ms: int = 10_000) -> bool:
        """Take the right to publish `account`'s outbox for `ttl_ms` (False: someone has it)."""
        async with _translated("claim outbox"):
            got = await self._client.set(keys.outbox_claim_key(account), owner, nx=True, px=ttl_ms)
        return bool(got)

    async def release_outbox(self, account: str, owner: str) -> None:
        """Give the claim back if we still hold it."""
        async with _translated("release outbox"):
            await self._release(keys=[keys.outbox_claim_key(account)], args=[owner])

    async def read_outbox(self, account: str, count: int = 500) -> list[OutboxEntry]:
        """Oldest entries first."""
        async with _translated("read outbox"):
            rows = await self._client.xrange(keys.outbox_key(account), count=count)
        return [
            OutboxEntry(_text(entry), {_text(k): _text(v) for k, v in (data or {}).items()})
            for entry, data in rows or ()
        ]

    async def ack_outbox(self, account: str, entry_ids: Sequence[str]) -> int:
        """Delete published entries; drop the index note when the outbox is empty.

        A crossing written between the length check and the index removal loses its note; the
        periodic sweep finds it (a delay, never a loss).
        """
        async with _translated("ack outbox"):
            key = keys.outbox_key(account)
            remaining = int(await self._ack(keys=[key], args=list(entry_ids)))
            if remaining == 0:
                await self._client.srem(keys.OUTBOX_INDEX, account)
        return remaining

    # -- reads for the API and tests ----------------------------------------------------------

    async def read_amounts(
        self, account: str, meters: Sequence[tuple[str, str, Aggregation]]
    ) -> dict[tuple[str, str], int]:
        """Current amount of each (meter, period) in one round trip (0 when nothing yet)."""
        async with _translated("read amounts"):
            pipe = self._client.pipeline(transaction=False)
            for meter, period, aggregation in meters:
                _queue_amount(pipe, account, meter, period, aggregation)
            replies = await pipe.execute()
        return {
            (meter, period): int(reply or 0)
            for (meter, period, _), reply in zip(meters, replies, strict=True)
        }

    async def last_updates(self, account: str) -> dict[str, int]:
        """`meter:period` -> last update time (epoch ms)."""
        async with _translated("read last updates"):
            raw = await self._client.hgetall(keys.updates_key(account))
        return {_text(k): int(v) for k, v in raw.items()}

    async def members(self, account: str, meter: str, period: str) -> set[str]:
        """The distinct members counted for (meter, period): the "past usage" report."""
        async with _translated("read members"):
            raw = await self._client.smembers(keys.distinct_key(account, meter, period))
        return {_text(m) for m in raw}

    # -- rollups, statements and tiers ---------------------------------------------------------
    # Added for period close (streams/period_close.py, docs/decisions/0004-period-close.md).
    # The close itself is one Lua step per account (lua/close_period.lua); the other methods
    # are the reads the closer decides on, its claims, and reads for tests and the API.

    _close: AsyncScript | None = None

    async def open_accounts(self) -> list[str]:
        """Accounts with an open-period index (periods with data not closed yet), by scanning."""
        async with _translated("scan open periods"):
            found = [
                _text(raw)[len("mtr:{") : -len("}:p")]
                async for raw in self._client.scan_iter(match="mtr:{*}:p", count=1000, _type="hash")
            ]
        return sorted(found)

    async def open_periods(self, accounts: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per account, its open-period index: `meter:period` -> period end (epoch ms)."""
        async with _translated("read open periods"):
            pipe = self._client.pipeline(transaction=False)
            for account in accounts:
                pipe.hgetall(keys.open_periods_key(account))
            replies = await pipe.execute()
        return {
            account: {_text(k): int(v) for k, v in reply.items()}
            for account, reply in zip(accounts, replies, strict=True)
        }

    async def fenced_partitions(
        self, accounts: Sequence[str], topic: str, partitions: Sequence[int]
    ) -> dict[str, list[int]]:
        """Per account, the partitions of `topic` it has a fence for (events were applied)."""
        async with _translated("read fences"):
            pipe = self._client.pipeline(transaction=False)
            for account in accounts:
                for partition in partitions:
                    pipe.exists(keys.fence_key(account, topic, partition))
            replies = await pipe.execute()
        width = len(partitions)
        return {
            account: [p for j, p in enumerate(partitions) if replies[i * width + j]]
            for i, account in enumerate(accounts)
        }

    async def rollups(self, account: str, meters: Sequence[str]) -> dict[str, dict[str, int]]:
        """Frozen totals per meter: period -> total."""
        async with _translated("read rollups"):
            pipe = self._client.pipeline(transaction=False)
            for meter in meters:
                pipe.hgetall(closing.rollup_key(account, meter))
            replies = await pipe.execute()
        return {
            meter: {_text(k): int(v) for k, v in reply.items()}
            for meter, reply in zip(meters, replies, strict=True)
        }

    async def placements(self, account: str) -> dict[str, dict[str, Any]]:
        """The last placement decided per ladder (see metering.rollups.placement_record)."""
        async with _translated("read placements"):
            raw = await self._client.hgetall(closing.placements_key(account))
        return {
            _text(k): orjson.loads(v) for k, v in raw.items() if not _text(k).startswith("as_of:")
        }

    async def gauge_month_ops(
        self, account: str, meter: str, months: Sequence[str]
    ) -> list[set[str]]:
        """Entries (`+member` / `-member`) of a gauge's month shadows, in the order given."""
        async with _translated("read gauge months"):
            pipe = self._client.pipeline(transaction=False)
            for month in months:
                pipe.smembers(keys.gauge_key(account, gauge_month_meter(meter, month)))
            replies = await pipe.execute()
        return [{_text(m) for m in reply} for reply in replies]

    async def gauge_snapshot(
        self, account: str, meter: str, members: Sequence[str]
    ) -> tuple[int, dict[str, bool]]:
        """Level of a gauge's month-end snapshot, and whether each of `members` is in it."""
        key = closing.gauge_snapshot_key(account, meter)
        async with _translated("read gauge snapshot"):
            pipe = self._client.pipeline(transaction=False)
            pipe.scard(key)
            for start in range(0, len(members), 2000):
                pipe.smismember(key, list(members[start : start + 2000]))
            replies = await pipe.execute()
        flags = [bool(flag) for reply in replies[1:] for flag in reply]
        return int(replies[0]), dict(zip(members, flags, strict=True))

    async def close_periods(self, step: closing.CloseStep) -> closing.CloseOutcome:
        """Run one account's close step (lua/close_period.lua) atomically."""
        if self._close is None:
            self._close = self._client.register_script(_load_script("close_period.lua"))
        key, payload = closing.encode_close(step)
        async with _translated("close periods"):
            reply = await self._close(keys=[key], args=[payload])
        return closing.decode_close(reply)

    async def claim_close(self, account: str, owner: str, ttl_ms: int = 60_000) -> bool:
        """Take the right to close `account`'s periods for `ttl_ms` (False: someone has it)."""
        async with _translated("claim close"):
            got = await self._client.set(
                closing.close_claim_key(account), owner, nx=True, px=ttl_ms
            )
        return bool(got)

    async def release_close(self, account: str, owner: str) -> None:
        """Give the close claim back if we still hold it."""
        async with _translated("release close"):
            await self._release(keys=[closing.close_claim_key(account)], args=[owner])

    async def take_close_lease(self, owner: str, ttl_ms: int) -> bool:
        """Take (or extend, when ours) the right to run a close pass."""
        async with _translated("take close lease"):
            if await self._client.set(closing.CLOSE_LEASE, owner, nx=True, px=ttl_ms):
                return True
            if _text(await self._client.get(closing.CLOSE_LEASE)) == owner:
                await self._client.pexpire(closing.CLOSE_LEASE, ttl_ms)
                return True
        return False

    async def release_close_lease(self, owner: str) -> None:
        async with _translated("release close lease"):
            await self._release(keys=[closing.CLOSE_LEASE], args=[owner])

    async def key_count(self) -> int:
        """Keys in this database (a backfill refuses a target that is not empty)."""
        async with _translated("count keys"):
            return int(await self._client.dbsize())

    # -- admission and API reads --------------------------------------------------------------
    # Added for the HTTP API (metering/api). Admission reserves new members of a distinct set
    # atomically (lua/admit_members.lua); the other methods are plain reads and the API keys'
    # table, which is the one non-account key the API writes.

    _admit_members: AsyncScript | None = None

    @classmethod
    def for_api(
        cls, url: str, *, timeout_s: float = 5.0, max_connections: int = 64
    ) -> RedisStateStore:
        """Like `from_url`, but requests beyond `max_connections` wait for a free connection
        (up to `timeout_s`) instead of failing with "Too many connections": an HTTP server
        has as many concurrent callers as clients send, unlike the processor's one pipeline.

        A command that fails with a connection error is sent once more on a fresh connection:
        after a Redis restart, every pooled connection is dead, and without the retry the first
        request on each answered 503. Only connection errors (not timeouts, after which the
        command may still be running), and only once, so a Redis that is really down is still
        reported at once. Safe because every write the API makes has the same effect when
        repeated: API key records (HSET, HDEL), the readiness probe (SET) and admission's
        reservations (set members, lua/admit_members.lua)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
        )
        return cls(aioredis.Redis.from_pool(pool))  # closing the client closes the pool

    async def admit_members(
        self,
        account: str,
        meter: str,
        period: str,
        members: Sequence[str],
        *,
        limit: int | None,
        hard: bool,
        period_start_ms: int,
        period_end_ms: int,
        expire_at_s: int,
    ) -> tuple[int, str]:
        """Decide (and when `hard`, reserve) `members` of a distinct meter in one atomic step.

        Returns the set's size afterwards and one code per member (see lua/admit_members.lua):
        `c` already counted, `s` suppressed, `a` admitted, `o` over the limit (advisory),
        `r` refused. `period_start_ms` 0 ignores suppressions (the meter does not exclude them).
        """
        if self._admit_members is None:
            self._admit_members = self._client.register_script(_load_script("admit_members.lua"))
        names = [
            keys.distinct_key(account, meter, period),
            keys.suppressions_key(account),
            keys.open_periods_key(account),
        ]
        args: list[str | int] = [
            -1 if limit is None else limit,
            1 if hard else 0,
            period_start_ms,
            expire_at_s,
            f"{meter}:{period}",
            period_end_ms,
            *members,
        ]
        async with _translated("admit members"):
            reply = await self._admit_members(keys=names, args=args)
        return int(reply[0]), _text(reply[1])

    async def gauge_flags(self, account: str, meter: str, members: Sequence[str]) -> list[bool]:
        """Whether each member is present in a gauge's set now (one SMISMEMBER per 2,000)."""
        if not members:
            return []
        key = keys.gauge_key(account, meter)
        async with _translated("read gauge members"):
            pipe = self._client.pipeline(transaction=False)
            for start in range(0, len(members), 2000):
                pipe.smismember(key, list(members[start : start + 2000]))
            replies = await pipe.execute()
        return [bool(flag) for reply in replies for flag in reply]

    async def put_api_key(self, digest: str, record: bytes) -> None:
        """Store an API key's record under the SHA-256 digest of its token (never the token)."""
        async with _translated("store API key"):
            await self._client.hset(API_KEYS, digest, record)

    async def api_key(self, digest: str) -> bytes | None:
        """The record of the key whose token hashes to `digest`, if any."""
        async with _translated("read API key"):
            raw = await self._client.hget(API_KEYS, digest)
        return None if raw is None else _raw(raw)

    async def api_keys(self) -> dict[str, bytes]:
        """Every stored key record by digest (for listing and revoking)."""
        async with _translated("list API keys"):
            raw = await self._client.hgetall(API_KEYS)
        return {_text(k): _raw(v) for k, v in raw.items()}

    async def delete_api_keys(self, digests: Sequence[str]) -> int:
        """Remove keys by digest; returns how many existed."""
        if not digests:
            return 0
        async with _translated("delete API keys"):
            return int(await self._client.hdel(API_KEYS, *digests))


API_KEYS = "mtr:api-keys"
HEALTH_PROBE = "mtr:api:write-probe"
"""Written by readiness checks (`readiness`) to learn whether Redis accepts writes."""
HEALTH_PROBE_TTL_MS = 10_000
"""Hash: SHA-256 hex digest of an API token -> JSON record (id, scope, account, created)."""


def _raw(value: bytes | str) -> bytes:
    """Replies are bytes (decode_responses is off); the typing allows str too."""
    return value if isinstance(value, bytes) else value.encode()


def _text(value: bytes | str | None) -> str:
    """Replies are bytes (decode_responses is off); the typing allows str and None too."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else value


def _queue_amount(pipe: Any, account: str, meter: str, period: str, agg: Aggregation) -> None:
    if agg in (Aggregation.COUNT, Aggregation.SUM):
        pipe.get(keys.counter_key(account, meter, period))
    elif agg is Aggregation.BALANCE:
        pipe.get(keys.balance_key(account, meter))
    elif agg is Aggregation.DISTINCT:
        pipe.scard(keys.distinct_key(account, meter, period))
    else:
        pipe.scard(keys.gauge_key(account, meter))
