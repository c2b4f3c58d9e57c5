"""The processor's part of the store: apply steps, partition positions, the store marker.

Typed by `metering.core.ports.UsageStore`; the commit order that uses it is written in
streams/processor.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import orjson
from redis.crc import key_slot

from metering.core.ports import ApplyOutcome, ApplyStep
from metering.state import keys
from metering.state.codec import decode_outcome, encode_step
from metering.state.connection import RedisConnection, text, translated


class UsageState(RedisConnection):
    """Apply steps, positions and the store marker (the processor; `key_count` for the backfill)."""

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
        async with translated("apply"):
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
        async with translated("read positions"):
            values = await self._client.mget(names)
        found: dict[int, tuple[int, int]] = {}
        for i, partition in enumerate(parts):
            position, watermark = values[i], values[i + len(parts)]
            if position is not None:
                found[partition] = (int(position), int(watermark or 0))
        return found

    async def advance_positions(
        self,
        group: str,
        topic: str,
        positions: Mapping[int, tuple[int, int]],
        *,
        applied_ms: int,
    ) -> None:
        """Store (position, watermark) reached per partition, and `applied_ms` as the time it
        was reached (the API's "as of"); a position never moves back, and a write that would
        move it back changes none of the three."""
        if not positions:
            return
        async with translated("advance positions"):
            pipe = self._client.pipeline(transaction=False)
            for partition, (offset, watermark) in positions.items():
                names = [
                    keys.position_key(group, topic, partition),
                    keys.watermark_key(group, topic, partition),
                    keys.applied_key(group, topic, partition),
                ]
                await self._advance(
                    keys=names, args=[offset, watermark, applied_ms], client=pipe
                )
            await pipe.execute()

    async def store_marker(self) -> str | None:
        """The store marker's value, None when absent.

        A processor writes a random marker when it first uses a store and checks it before
        every write: Redis that restarted empty, was flushed or was swapped for another one has
        no marker (or another), which positions alone cannot tell once they were written again.
        """
        async with translated("read store marker"):
            value = await self._client.get(keys.STORE_MARKER)
        return None if value is None else text(value)

    async def marker_and_positions(
        self, group: str, topic: str, partitions: Sequence[int]
    ) -> tuple[str | None, dict[int, int]]:
        """The store marker and the stored positions of `partitions`, in one round trip (what
        a processor checks before every write: Redis neither emptied nor gone back in time)."""
        names = [keys.STORE_MARKER] + [keys.position_key(group, topic, p) for p in partitions]
        async with translated("read store marker"):
            values = await self._client.mget(names)
        marker = None if values[0] is None else text(values[0])
        stored = {p: int(v) for p, v in zip(partitions, values[1:], strict=True) if v is not None}
        return marker, stored

    async def mark_rebuilding(self, topic: str, partition: int, until_offset: int) -> None:
        """Record that `topic`/`partition` is being replayed after a Redis loss and must reach
        `until_offset` (exclusive) before the store is whole again."""
        async with translated("mark rebuilding"):
            await self._client.hset(keys.REBUILDING, f"{topic}:{partition}", until_offset)

    async def rebuilding_targets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """The replay targets still recorded for `partitions` (a processor that takes over a
        partition mid-rebuild, or restarts during one, carries on with them)."""
        if not partitions:
            return {}
        fields = [f"{topic}:{p}" for p in partitions]
        async with translated("read rebuilding"):
            values = await self._client.hmget(keys.REBUILDING, fields)
        return {p: int(v) for p, v in zip(partitions, values, strict=True) if v is not None}

    async def finish_rebuilding(self, topic: str, partitions: Sequence[int]) -> None:
        """The replays of `partitions` reached their targets."""
        if not partitions:
            return
        async with translated("finish rebuilding"):
            await self._client.hdel(keys.REBUILDING, *[f"{topic}:{p}" for p in partitions])

    async def claim_store_marker(self, token: str) -> str:
        """Write `token` as the marker unless one exists; return the marker now in force."""
        async with translated("write store marker"):
            await self._client.set(keys.STORE_MARKER, token, nx=True)
            value = await self._client.get(keys.STORE_MARKER)
        return text(value)

    async def has_fences(self, topic: str) -> bool:
        """Whether any account has a fence for `topic` (SCAN, stops at the first found).

        Without a store marker and without positions, fences mean that a store lost its state
        and then received some writes: replaying over them would skip events below them.
        """
        async with translated("scan fences"):
            async for _ in self._client.scan_iter(match=keys.fence_pattern(topic), count=1000):
                return True
        return False

    async def key_count(self) -> int:
        """Keys in this database (a backfill refuses a target that is not empty)."""
        async with translated("count keys"):
            return int(await self._client.dbsize())
