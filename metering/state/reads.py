"""The API's part of the store: usage reads, the processor's progress per partition (how
fresh the counts are), readiness, and admission's atomic steps: the reservation of new members
of a distinct meter (lua/admit_members.lua) and the all-or-nothing hold of an import's new
members on a gauge (lua/admit_gauge.lua); the holds of counters and balances (lua/holds.lua:
authorize, then capture)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis import exceptions as redis_errors

from metering.core.deltas import Aggregation
from metering.core.freshness import PartitionProgress
from metering.core.holds import HoldKind, HoldLevel, HoldOutcome, HoldRequest
from metering.core.ports import GaugeAdmission, MemberVerdict
from metering.state import keys
from metering.state.codec import decode_admission, decode_gauge_admission
from metering.state.connection import (
    RedisConnection,
    load_script,
    queue_amount,
    text,
    translated,
    write_refusal,
)


class ReadState(RedisConnection):
    """Amounts, last updates, members, readiness; admission."""

    async def read_amounts(
        self, account: str, meters: Sequence[tuple[str, str, Aggregation]]
    ) -> dict[tuple[str, str], int]:
        """Current amount of each (meter, period) in one round trip (0 when nothing yet)."""
        async with translated("read amounts"):
            pipe = self._client.pipeline(transaction=False)
            for meter, period, aggregation in meters:
                queue_amount(pipe, account, meter, period, aggregation)
            replies = await pipe.execute()
        return {
            (meter, period): int(reply or 0)
            for (meter, period, _), reply in zip(meters, replies, strict=True)
        }

    async def last_updates(self, account: str) -> dict[str, int]:
        """`meter:period` -> last update time (epoch ms)."""
        async with translated("read last updates"):
            raw = await self._client.hgetall(keys.updates_key(account))
        return {text(k): int(v) for k, v in raw.items()}

    async def progress(
        self, group: str, topic: str, partitions: Sequence[int]
    ) -> dict[int, PartitionProgress]:
        """Position, watermark and applied time of the partitions that have a position, in
        one MGET (what `GET /v1/wait` polls)."""
        if not partitions:
            return {}
        names = [keys.position_key(group, topic, p) for p in partitions]
        names += [keys.watermark_key(group, topic, p) for p in partitions]
        names += [keys.applied_key(group, topic, p) for p in partitions]
        async with translated("read positions"):
            values = await self._client.mget(names)
        n = len(partitions)
        found: dict[int, PartitionProgress] = {}
        for i, partition in enumerate(partitions):
            position, watermark, applied = values[i], values[n + i], values[2 * n + i]
            if position is not None:
                found[partition] = PartitionProgress(
                    int(position), int(watermark or 0), None if applied is None else int(applied)
                )
        return found

    async def members(self, account: str, meter: str, period: str) -> set[str]:
        """The distinct members counted for (meter, period): the "past usage" report."""
        async with translated("read members"):
            raw = await self._client.smembers(keys.distinct_key(account, meter, period))
        return {text(m) for m in raw}

    async def placements_of(self, accounts: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Per account, the last placement the closer decided per ladder, in one round trip
        (`metering.core.rollups.placement_record`; the wrong-tier report reads them)."""
        async with translated("read placements"):
            pipe = self._client.pipeline(transaction=False)
            for account in accounts:
                pipe.hgetall(keys.placements_key(account))
            replies = await pipe.execute()
        return {
            account: {
                text(k): orjson.loads(v)
                for k, v in reply.items()
                if not text(k).startswith("as_of:")
            }
            for account, reply in zip(accounts, replies, strict=True)
        }

    async def readiness(self) -> tuple[str | None, int, str | None]:
        """(store marker, number of partitions still replaying after a loss, why writes are
        refused or None) in one round trip: what the API checks before answering.

        Writes are probed with a tiny SET (with a TTL) of `HEALTH_PROBE`, since a Redis that
        cannot persist (MISCONF), is full (OOM) or is a replica (READONLY) still answers reads;
        the cause is `StateStoreRefusingWrites.CAUSES`'s name. Other errors raise as usual.
        """
        async with translated("read store readiness"):
            pipe = self._client.pipeline(transaction=False)
            pipe.set(keys.HEALTH_PROBE, 1, px=keys.HEALTH_PROBE_TTL_MS)
            pipe.get(keys.STORE_MARKER)
            pipe.hlen(keys.REBUILDING)
            probe, marker, rebuilding = await pipe.execute(raise_on_error=False)
            refusal = None
            if isinstance(probe, redis_errors.RedisError):
                refusal = write_refusal(probe)
                if refusal is None:
                    raise probe
            for reply in (marker, rebuilding):
                if isinstance(reply, Exception):
                    raise reply
        return (None if marker is None else text(marker)), int(rebuilding), refusal

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
            self._admit_members = self._client.register_script(load_script("admit_members.lua"))
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
        async with translated("admit members"):
            reply = await self._admit_members(keys=names, args=args)
        return int(reply[0]), text(reply[1])

    async def admit_gauge(
        self,
        account: str,
        meter: str,
        members: Sequence[str],
        *,
        limit: int | None,
        whole: bool,
        now_ms: int,
        hold_until_ms: int,
    ) -> GaugeAdmission:
        """Which of `members` a gauge holds, its level and the places other admitted imports
        hold, in one atomic step; when `whole`, also admit the new members all or nothing and
        hold their places until `hold_until_ms` (see lua/admit_gauge.lua)."""
        if self._admit_gauge is None:
            self._admit_gauge = self._client.register_script(load_script("admit_gauge.lua"))
        names = [keys.gauge_key(account, meter), keys.holds_key(account, meter)]
        args: list[str | int] = [
            -1 if limit is None else limit,
            "whole" if whole else "read",
            now_ms,
            hold_until_ms,
            *members,
        ]
        async with translated("admit to a gauge"):
            reply = await self._admit_gauge(keys=names, args=args)
        return decode_gauge_admission(reply)

    async def _holds(self, names: list[str], args: list[str | int], what: str) -> Any:
        if self._holds_script is None:
            self._holds_script = self._client.register_script(load_script("holds.lua"))
        async with translated(what):
            return await self._holds_script(keys=names, args=args)

    async def hold(
        self,
        account: str,
        hold: str,
        requests: Sequence[HoldRequest],
        items: int,
        *,
        now_ms: int,
        expires_ms: int,
    ) -> HoldOutcome:
        """Admit the longest prefix of `items` that fits every request's meter and hold its
        units under `hold` until `expires_ms`, in one atomic step (lua/holds.lua, "admit")."""
        names = keys.hold_keys(account)
        args: list[str | int] = ["admit", now_ms, expires_ms, hold, items]
        for r in requests:
            if r.kind is HoldKind.BALANCE:
                names.append(keys.balance_key(account, r.meter))
            else:
                names.append(keys.counter_key(account, r.meter, r.period))
            args += [r.slot, r.kind.value, -1 if r.limit is None else r.limit, r.per]
        reply = await self._holds(names, args, "hold units")
        levels = tuple(
            HoldLevel(int(reply[i]), int(reply[i + 1])) for i in range(1, len(reply), 2)
        )
        return HoldOutcome(int(reply[0]), levels)

    async def shrink_hold(
        self, account: str, hold: str, keep: Mapping[str, int], *, now_ms: int
    ) -> None:
        """Let `hold` keep at most `keep[slot]` units per slot (part of its request was
        refused by another meter after the hold was taken)."""
        args: list[str | int] = ["shrink", now_ms, hold]
        for slot, units in keep.items():
            args += [slot, units]
        await self._holds(keys.hold_keys(account), args, "shrink a hold")

    async def release_hold(self, account: str, hold: str, *, now_ms: int) -> dict[str, int]:
        """Free what `hold` still holds: `meter:period` -> units (empty when the hold is
        unknown, already captured or expired)."""
        reply = await self._holds(
            keys.hold_keys(account), ["release", now_ms, hold], "release a hold"
        )
        return {text(reply[i]): int(reply[i + 1]) for i in range(0, len(reply), 2)}

    async def held(self, account: str, slots: Sequence[str], *, now_ms: int) -> dict[str, int]:
        """Units live holds hold per `meter:period` slot (expired holds are dropped first)."""
        if not slots:
            return {}
        reply = await self._holds(
            keys.hold_keys(account), ["read", now_ms, *slots], "read holds"
        )
        return {slot: max(0, int(v)) for slot, v in zip(slots, reply, strict=True)}

    async def admit(
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
    ) -> tuple[int, tuple[MemberVerdict, ...]]:
        """`admit_members` with its reply decoded: the set's size afterwards and one verdict
        per member (what the API decides from; the letters stay in the codec)."""
        size, codes = await self.admit_members(
            account,
            meter,
            period,
            members,
            limit=limit,
            hard=hard,
            period_start_ms=period_start_ms,
            period_end_ms=period_end_ms,
            expire_at_s=expire_at_s,
        )
        return size, decode_admission(codes)
