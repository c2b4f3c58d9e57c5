"""The outbox publisher's part of the store: the index of non-empty outboxes, shard claims,
reads and acknowledgements. Typed by `metering.core.ports.OutboxStore`.

What was published is decided by Kafka (the publisher's progress topic, ADR 0008); the
entries here are deleted after the fact, so an acknowledgement lost in a crash only leaves
entries that the next publisher recognises as published and deletes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis.commands.core import AsyncScript

from metering.core.ports import OutboxEntry
from metering.state import keys
from metering.state.connection import RedisConnection, load_script, text, translated


class OutboxState(RedisConnection):
    """Accounts' outboxes: index, sweep, claim, read, acknowledge."""

    async def index_outboxes(self, accounts: Iterable[str]) -> None:
        """Note accounts whose outbox has entries, so the publisher finds them at once."""
        names = list(accounts)
        if names:
            async with translated("index outboxes"):
                await self._client.sadd(keys.OUTBOX_INDEX, *names)

    async def indexed_outboxes(self) -> list[str]:
        """Accounts noted as having outbox entries."""
        async with translated("read outbox index"):
            members = await self._client.smembers(keys.OUTBOX_INDEX)
        return sorted(text(m) for m in members)

    async def sweep_outboxes(self) -> list[str]:
        """Find every non-empty outbox by scanning: recovers entries whose index note was lost."""
        async with translated("sweep outboxes"):
            found = [
                keys.account_of(text(key), keys.OUTBOX_SUFFIX)
                async for key in self._client.scan_iter(
                    match=keys.OUTBOX_PATTERN, count=1000, _type="stream"
                )
            ]
        return sorted(found)

    _claim_shard: AsyncScript | None = None
    """Registered on first use (only publishers claim shards)."""

    async def claim_publisher_shard(self, shard: int, owner: str, ttl_ms: int) -> bool:
        """Take, or keep, the right to publish this shard's outboxes for `ttl_ms` (False:
        another publisher holds it). Holding it again extends the expiry."""
        if self._claim_shard is None:
            self._claim_shard = self._client.register_script(load_script("claim_shard.lua"))
        async with translated("claim publisher shard"):
            got = await self._claim_shard(
                keys=[keys.publisher_shard_key(shard)], args=[owner, ttl_ms]
            )
        return bool(int(got))

    async def release_publisher_shard(self, shard: int, owner: str) -> None:
        """Give the shard back if we still hold it."""
        async with translated("release publisher shard"):
            await self._release(keys=[keys.publisher_shard_key(shard)], args=[owner])

    async def read_outbox(self, account: str, count: int = 500) -> list[OutboxEntry]:
        """Oldest entries first."""
        async with translated("read outbox"):
            rows = await self._client.xrange(keys.outbox_key(account), count=count)
        return [
            OutboxEntry(text(entry), {text(k): text(v) for k, v in (data or {}).items()})
            for entry, data in rows or ()
        ]

    async def ack_outbox(self, account: str, entry_ids: Sequence[str]) -> int:
        """Delete published entries; drop the index note when the outbox is empty.

        A crossing written between the length check and the index removal loses its note; the
        periodic sweep finds it (a delay, never a loss).
        """
        async with translated("ack outbox"):
            key = keys.outbox_key(account)
            remaining = int(await self._ack(keys=[key], args=list(entry_ids)))
            if remaining == 0:
                await self._client.srem(keys.OUTBOX_INDEX, account)
        return remaining
