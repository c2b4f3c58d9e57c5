"""The outbox publisher's part of the store: the index of non-empty outboxes, claims, reads
and acknowledgements. Typed by `metering.core.ports.OutboxStore`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from metering.core.ports import OutboxEntry
from metering.state import keys
from metering.state.connection import RedisConnection, text, translated


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

    async def claim_outbox(self, account: str, owner: str, ttl_ms: int = 10_000) -> bool:
        """Take the right to publish `account`'s outbox for `ttl_ms` (False: someone has it)."""
        async with translated("claim outbox"):
            got = await self._client.set(keys.outbox_claim_key(account), owner, nx=True, px=ttl_ms)
        return bool(got)

    async def release_outbox(self, account: str, owner: str) -> None:
        """Give the claim back if we still hold it."""
        async with translated("release outbox"):
            await self._release(keys=[keys.outbox_claim_key(account)], args=[owner])

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
