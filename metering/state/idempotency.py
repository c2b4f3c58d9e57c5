"""Answers of writes by Idempotency-Key (`keys.idempotency_key`): claimed, saved, released.

A write that carries an `Idempotency-Key` first claims its key with a pending record (SET NX
with the TTL); the API then saves the answer over it, or releases the claim when the answer
must not be replayed (a 5xx or a 429: the caller should try again for real). The TTL bounds
how long a key is remembered (`METERING_API_IDEMPOTENCY_TTL_S`). The records are opaque
bytes here; metering/api/idempotency.py gives them their meaning.
"""

from __future__ import annotations

from metering.state import keys
from metering.state.connection import RedisConnection, raw, translated


class IdempotencyState(RedisConnection):
    """Pending and finished answers of idempotent writes, by digest."""

    async def claim_idempotency(self, digest: str, pending: bytes, ttl_ms: int) -> bytes | None:
        """Store `pending` under `digest` unless something is there; None when this call
        claimed it, else the record already stored (pending or finished)."""
        key = keys.idempotency_key(digest)
        async with translated("claim idempotency key"):
            for _ in range(2):  # the record may expire between SET NX and GET: claim again
                if await self._client.set(key, pending, nx=True, px=ttl_ms):
                    return None
                found = await self._client.get(key)
                if found is not None:
                    return raw(found)
        return None

    async def save_idempotency(self, digest: str, record: bytes, ttl_ms: int) -> None:
        """Replace the claim of `digest` with the finished answer, for `ttl_ms` more."""
        async with translated("save idempotent answer"):
            await self._client.set(keys.idempotency_key(digest), record, px=ttl_ms)

    async def release_idempotency(self, digest: str) -> None:
        """Forget the claim of `digest`: the next request with that key runs afresh."""
        async with translated("release idempotency key"):
            await self._client.delete(keys.idempotency_key(digest))
