"""API keys: account-scoped keys read their own account, admin keys change plans and accounts.

A token is `mk_` + 32 random bytes (URL-safe base64), shown once when created. Only its
SHA-256 digest is stored (Redis hash `mtr:api-keys`, see the store's API section): a token has
256 bits of entropy, so a plain hash is enough (no salt or slow hash needed: nobody can guess
a preimage), and a leaked Redis dump reveals no usable key.

Clients send `Authorization: Bearer <token>`. The dashboard exchanges the token once for an
HttpOnly cookie (`/v1/session`); the cookie is accepted on GET and HEAD only, so a cross-site
form can never make a browser change anything with it.

Lookups are cached in memory for `cache_s` seconds (positive and negative answers), so the hot
admission path costs no extra Redis round trip; a revoked key stops working within that time.
Tokens are never logged: log lines name a key by its id (`k_...`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import orjson
from starlette.requests import Request

from metering.api.problems import Problem
from metering.core.ports import wall_clock_ms

TOKEN_PREFIX = "mk_"  # noqa: S105 - a prefix, not a secret
COOKIE = "mtr_key"
_MAX_TOKEN_CHARS = 200
_CACHE_MAX = 10_000


class Scope(StrEnum):
    ACCOUNT = "account"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a key may do; stored as JSON under the digest of its token."""

    id: str
    """Public name of the key (`k_` + 12 hex): for logs, listing and revoking."""
    scope: Scope
    account: str | None
    """The one account an account-scoped key may read; None for admin keys."""
    created_ms: int

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "scope": self.scope.value,
                "account": self.account,
                "created_ms": self.created_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> KeyRecord:
        doc = orjson.loads(raw)
        return cls(doc["id"], Scope(doc["scope"]), doc.get("account"), int(doc["created_ms"]))

    def may_read(self, account: str) -> bool:
        return self.scope is Scope.ADMIN or self.account == account


class KeyStore(Protocol):
    """Where key records live (the Redis state store implements it)."""

    async def put_api_key(self, digest: str, record: bytes) -> None: ...
    async def api_key(self, digest: str) -> bytes | None: ...
    async def api_keys(self) -> dict[str, bytes]: ...
    async def delete_api_keys(self, digests: list[str]) -> int: ...


def digest(token: str) -> str:
    """SHA-256 hex digest of a token: the only form in which it is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class KeyRing:
    """Creates, finds (with a short cache) and revokes API keys."""

    def __init__(
        self,
        store: KeyStore,
        *,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}

    async def create(self, scope: Scope, account: str | None = None) -> tuple[str, KeyRecord]:
        """A new key; returns the token (to show once) and its record."""
        if (scope is Scope.ACCOUNT) != (account is not None):
            raise ValueError("an account key names its account; an admin key names none")
        token = new_token()
        record = KeyRecord(
            id="k_" + secrets.token_hex(6),
            scope=scope,
            account=account,
            created_ms=wall_clock_ms(),
        )
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
        raw = await self._store.api_key(key)
        record = None if raw is None else KeyRecord.from_json(raw)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (now + self._cache_s, record)
        return record

    async def records(self) -> list[KeyRecord]:
        raw = await self._store.api_keys()
        return sorted((KeyRecord.from_json(v) for v in raw.values()), key=lambda r: r.id)

    async def revoke(self, *, key_id: str | None = None, account: str | None = None) -> int:
        """Delete the key named `key_id`, or every key of `account`; returns how many."""
        raw = await self._store.api_keys()
        doomed = []
        for key, value in raw.items():
            record = KeyRecord.from_json(value)
            if (key_id is not None and record.id == key_id) or (
                account is not None and record.account == account
            ):
                doomed.append(key)
        for key in doomed:
            self._cache.pop(key, None)
        return await self._store.delete_api_keys(doomed)


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
