"""The period closer's part of the store: open periods, fences, rollups, placements, gauge
snapshots, the close step and its claims (ADR 0004). Typed by `metering.core.ports.CloseStore`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from metering.core.ports import CloseOutcome, CloseStep
from metering.core.rollups import gauge_month_meter
from metering.state import keys
from metering.state.codec import decode_close, encode_close
from metering.state.connection import RedisConnection, load_script, text, translated


class CloseState(RedisConnection):
    """What the closer reads and the atomic close step."""

    async def open_accounts(self) -> list[str]:
        """Accounts with an open-period index (periods with data not closed yet), by scanning."""
        async with translated("scan open periods"):
            found = [
                keys.account_of(text(key), keys.OPEN_PERIODS_SUFFIX)
                async for key in self._client.scan_iter(
                    match=keys.OPEN_PERIODS_PATTERN, count=1000, _type="hash"
                )
            ]
        return sorted(found)

    async def open_periods(self, accounts: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per account, its open-period index: `meter:period` -> period end (epoch ms)."""
        async with translated("read open periods"):
            pipe = self._client.pipeline(transaction=False)
            for account in accounts:
                pipe.hgetall(keys.open_periods_key(account))
            replies = await pipe.execute()
        return {
            account: {text(k): int(v) for k, v in reply.items()}
            for account, reply in zip(accounts, replies, strict=True)
        }

    async def fenced_partitions(
        self, accounts: Sequence[str], topic: str, partitions: Sequence[int]
    ) -> dict[str, list[int]]:
        """Per account, the partitions of `topic` it has a fence for (events were applied)."""
        async with translated("read fences"):
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
        async with translated("read rollups"):
            pipe = self._client.pipeline(transaction=False)
            for meter in meters:
                pipe.hgetall(keys.rollup_key(account, meter))
            replies = await pipe.execute()
        return {
            meter: {text(k): int(v) for k, v in reply.items()}
            for meter, reply in zip(meters, replies, strict=True)
        }

    async def placements(self, account: str) -> dict[str, dict[str, Any]]:
        """The last placement decided per ladder (see metering.core.rollups.placement_record)."""
        async with translated("read placements"):
            raw = await self._client.hgetall(keys.placements_key(account))
        return {
            text(k): orjson.loads(v) for k, v in raw.items() if not text(k).startswith("as_of:")
        }

    async def gauge_month_ops(
        self, account: str, meter: str, months: Sequence[str]
    ) -> list[set[str]]:
        """Entries (`+member` / `-member`) of a gauge's month shadows, in the order given."""
        async with translated("read gauge months"):
            pipe = self._client.pipeline(transaction=False)
            for month in months:
                pipe.smembers(keys.gauge_key(account, gauge_month_meter(meter, month)))
            replies = await pipe.execute()
        return [{text(m) for m in reply} for reply in replies]

    async def gauge_snapshot(
        self, account: str, meter: str, members: Sequence[str]
    ) -> tuple[int, dict[str, bool]]:
        """Level of a gauge's month-end snapshot, and whether each of `members` is in it."""
        key = keys.gauge_snapshot_key(account, meter)
        async with translated("read gauge snapshot"):
            pipe = self._client.pipeline(transaction=False)
            pipe.scard(key)
            for start in range(0, len(members), 2000):
                pipe.smismember(key, list(members[start : start + 2000]))
            replies = await pipe.execute()
        flags = [bool(flag) for reply in replies[1:] for flag in reply]
        return int(replies[0]), dict(zip(members, flags, strict=True))

    async def close_periods(self, step: CloseStep) -> CloseOutcome:
        """Run one account's close step (lua/close_period.lua) atomically."""
        if self._close is None:
            self._close = self._client.register_script(load_script("close_period.lua"))
        key, payload = encode_close(step)
        async with translated("close periods"):
            reply = await self._close(keys=[key], args=[payload])
        return decode_close(reply)

    async def claim_close(self, account: str, owner: str, ttl_ms: int = 60_000) -> bool:
        """Take the right to close `account`'s periods for `ttl_ms` (False: someone has it)."""
        async with translated("claim close"):
            got = await self._client.set(
                keys.close_claim_key(account), owner, nx=True, px=ttl_ms
            )
        return bool(got)

    async def release_close(self, account: str, owner: str) -> None:
        """Give the close claim back if we still hold it."""
        async with translated("release close"):
            await self._release(keys=[keys.close_claim_key(account)], args=[owner])

    async def take_close_lease(self, owner: str, ttl_ms: int) -> bool:
        """Take (or extend, when ours) the right to run a close pass."""
        async with translated("take close lease"):
            if await self._client.set(keys.CLOSE_LEASE, owner, nx=True, px=ttl_ms):
                return True
            if text(await self._client.get(keys.CLOSE_LEASE)) == owner:
                await self._client.pexpire(keys.CLOSE_LEASE, ttl_ms)
                return True
        return False

    async def release_close_lease(self, owner: str) -> None:
        async with translated("release close lease"):
            await self._release(keys=[keys.CLOSE_LEASE], args=[owner])
