"""The API keys' table: the one non-account key the API writes (`keys.API_KEYS`)."""

from __future__ import annotations

from collections.abc import Sequence

from metering.state import keys
from metering.state.connection import RedisConnection, raw, text, translated


class ApiKeyState(RedisConnection):
    """API key records by the SHA-256 digest of their token (never the token)."""

    async def put_api_key(self, digest: str, record: bytes) -> None:
        """Store an API key's record under the SHA-256 digest of its token (never the token)."""
        async with translated("store API key"):
            await self._client.hset(keys.API_KEYS, digest, record)

    async def api_key(self, digest: str) -> bytes | None:
        """The record of the key whose token hashes to `digest`, if any."""
        async with translated("read API key"):
            found = await self._client.hget(keys.API_KEYS, digest)
        return None if found is None else raw(found)

    async def api_keys(self) -> dict[str, bytes]:
        """Every stored key record by digest (for listing and revoking)."""
        async with translated("list API keys"):
            found = await self._client.hgetall(keys.API_KEYS)
        return {text(k): raw(v) for k, v in found.items()}

    async def delete_api_keys(self, digests: Sequence[str]) -> int:
        """Remove keys by digest; returns how many existed."""
        if not digests:
            return 0
        async with translated("delete API keys"):
            return int(await self._client.hdel(keys.API_KEYS, *digests))
