"""API keys: account-scoped keys read their own account, admin keys change plans and accounts.

A token is `mk_` + 32 random bytes (URL-safe base64), shown once when created. Only its
SHA-256 digest is kept: a token has 256 bits of entropy, so a plain hash is enough (no salt or
slow hash needed: nobody can guess a preimage), and a leaked copy reveals no usable key.

Where keys live (docs/api.md, "Keys"): the durable record is on the compacted accounts topic
(`apikey:<id>`, metering.core.api_keys), which every API process follows into its `Directory`,
so a Redis loss loses no key; Redis holds a copy (hash `mtr:api-keys`) written when a key is
created, so that a new key works at once in every API process, before their followers have
read it. A lookup asks the directory first; only a digest the topic does not know is looked up
in Redis (a key created a moment ago, or one from before keys were on the topic, which
`metering api-keys migrate` moves there). A key the topic says is revoked (or tombstoned) is
refused whatever Redis holds.

Clients send `Authorization: Bearer <token>`. The dashboard exchanges the token once for an
HttpOnly cookie (`/v1/session`); the cookie is accepted on GET and HEAD only, so a cross-site
form can never make a browser change anything with it.

Lookups are cached in memory for `cache_s` seconds (positive and negative answers), so the hot
admission path costs no extra Redis round trip; a revoked key stops working within that time
after the process read the revocation. Tokens are never logged: log lines name a key by its
id (`k_...`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from starlette.requests import Request

from metering.api.problems import Problem
from metering.core.api_keys import KeyRecord, Scope, topic_record
from metering.core.directory import Directory
from metering.core.errors import ApiKeyError
from metering.core.ports import wall_clock_ms

__all__ = ["COOKIE", "KeyRecord", "KeyRing", "Scope", "digest", "presented_token"]

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mk_"  # noqa: S105 - a prefix, not a secret
COOKIE = "mtr_key"
_MAX_TOKEN_CHARS = 200
_CACHE_MAX = 10_000


class KeyStore(Protocol):
    """Where the Redis copies of key records live (the Redis state store implements it)."""

    async def put_api_key(self, digest: str, record: bytes) -> None: ...
    async def api_key(self, digest: str) -> bytes | None: ...
    async def api_keys(self) -> dict[str, bytes]: ...
    async def delete_api_keys(self, digests: list[str]) -> int: ...


class KeyPublisher(Protocol):
    """Writes a key's record to the accounts topic (sinks.config_writer.ConfigWriter)."""

    async def put_api_key(self, digest: str, record: KeyRecord) -> None: ...


def digest(token: str) -> str:
    """SHA-256 hex digest of a token: the only form in which it is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _parsed(raw: bytes) -> KeyRecord | None:
    """A Redis copy's record; a damaged one authenticates nothing (and is logged)."""
    try:
        return KeyRecord.from_json(raw)
    except (ApiKeyError, ValueError) as exc:
        log.warning("ignoring a damaged API key record in Redis: %s", exc)
        return None


class KeyRing:
    """Creates, finds (with a short cache) and revokes API keys.

    With a `directory` that follows the accounts topic and a `publisher` to it, keys are
    durable (the topic holds them; Redis holds copies). Without them (the API tests that embed
    the app without Kafka) keys live in Redis only, as before keys were on the topic.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        directory: Directory | None = None,
        publisher: KeyPublisher | None = None,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (directory is None) != (publisher is None):
            raise ValueError("durable keys need both the topic's directory and a publisher")
        self._store = store
        self._directory = directory
        self._publisher = publisher
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    async def create(self, scope: Scope, account: str | None = None) -> tuple[str, KeyRecord]:
        """A new key; returns the token (to show once) and its record.

        The topic record first (the durable one), then the Redis copy."""
        if (scope is Scope.ACCOUNT) != (account is not None):
            raise ValueError("an account key names its account; an admin key names none")
        token = new_token()
        record = KeyRecord(
            id="k_" + secrets.token_hex(6),
            scope=scope,
            account=account,
            created_ms=wall_clock_ms(),
        )
        await self._publish(digest(token), record)
        await self._store.put_api_key(digest(token), record.to_json())
        return token, record

    async def find(self, token: str) -> KeyRecord | None:
        """The record of `token`, or None when it is not a (current) key."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
            return None
        key = digest(token)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._lookup(key)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (now + self._cache_s, record)
        return record

    async def _lookup(self, key: str) -> KeyRecord | None:
        if self._directory is not None:
            known = self._directory.api_key(key)
            if known is not None:
                return known if known.revoked_ms is None else None
            if self._directory.api_key_withdrawn(key):
                return None
        raw = await self._store.api_key(key)
        return None if raw is None else _parsed(raw)

    async def records(self) -> list[KeyRecord]:
        """Every current key (revoked ones left out), by id."""
        found = dict(await self._live())
        return sorted(found.values(), key=lambda r: r.id)

    async def unmigrated(self) -> dict[str, KeyRecord]:
        """Digest -> record of the current keys that only Redis holds (none once migrated)."""
        if self._directory is None:
            return {}
        return {d: r for d, r in (await self._live()).items() if self._directory.api_key(d) is None}

    async def migrate(self) -> list[KeyRecord]:
        """Write every key that only Redis holds to the topic (idempotent); returns them."""
        moved = await self.unmigrated()
        for key, record in moved.items():
            await self._publish(key, record)
        return sorted(moved.values(), key=lambda r: r.id)

    async def revoke(self, *, key_id: str | None = None, account: str | None = None) -> int:
        """Revoke the key named `key_id`, or every key of `account`; returns how many.

        A revoked record goes to the topic (every process refuses the key from then on, even
        with a copy in Redis), then the Redis copy is deleted."""
        doomed = {
            key: record
            for key, record in (await self._live()).items()
            if (key_id is not None and record.id == key_id)
            or (account is not None and record.account == account)
        }
        now = wall_clock_ms()
        for key, record in doomed.items():
            await self._publish(key, record.revoked(now))
            self._cache.pop(key, None)
        deleted = await self._store.delete_api_keys(list(doomed))
        return deleted if self._publisher is None else len(doomed)

    async def _live(self) -> dict[str, KeyRecord]:
        """Digest -> record of every current key: the topic's, then Redis-only copies."""
        live: dict[str, KeyRecord] = {}
        if self._directory is not None:
            live = {d: r for d, r in self._directory.api_keys() if r.revoked_ms is None}
        for key, raw in (await self._store.api_keys()).items():
            if key in live or (
                self._directory is not None
                and (
                    self._directory.api_key(key) is not None
                    or self._directory.api_key_withdrawn(key)
                )
            ):
                continue
            record = _parsed(raw)
            if record is not None:
                live[key] = record
        return live

    async def _publish(self, key: str, record: KeyRecord) -> None:
        """Write the record to the topic and apply it here at once (this process need not
        wait for its follower); nothing without a publisher (Redis-only keys)."""
        if self._publisher is None or self._directory is None:
            return
        await self._publisher.put_api_key(key, record)
        refusal = self._directory.apply_record(*topic_record(key, record))
        if refusal is not None:
            raise ApiKeyError(record.id, "", f"refused by the configuration: {refusal.problem}")


def presented_token(request: Request) -> str | None:
    """The token of a request: the Bearer header, or the dashboard cookie on safe methods."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(
                401,
                "unauthenticated",
                "use Authorization: Bearer <API key>",
                headers={"WWW-Authenticate": 'Bearer realm="metering"'},
            )
        return token.strip()
    if request.method in ("GET", "HEAD"):
        return request.cookies.get(COOKIE)
    return None
