"""API key records: what a key may do, as kept on the compacted configuration topic.

A key is durable configuration like an account or a plan: its record lives on the accounts
topic under `apikey:<key id>` (docs/api.md, "Keys"), so every process that replays the topic
knows every key, and a Redis loss loses none. The record holds the SHA-256 digest of the token,
never the token: the topic may be read by anyone who can read configuration, and a digest of a
256-bit random token cannot be turned back into it.

    key "apikey:k_0123456789ab"
    value {"id": "k_0123456789ab", "digest": "<64 hex>", "scope": "account"|"admin",
           "account": "<id>"|null, "created_ms": <int>, "revoked_ms": <int>|null}

Revoking writes the same record with `revoked_ms` set (it stays on the topic, so every process,
even one that still finds a copy of the key in Redis, refuses it). Parsing is strict (only
these fields, each checked) so that a hostile record is refused with a reason, and a record
that carried anything else, a token included, is never applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from metering.core.errors import ApiKeyError

API_KEY_PREFIX = "apikey:"
KEY_ID = re.compile(r"k_[0-9a-f]{1,32}")
DIGEST = re.compile(r"[0-9a-f]{64}")
_MAX_ACCOUNT_CHARS = 200
_FIELDS = frozenset({"id", "digest", "scope", "account", "created_ms", "revoked_ms"})
_MAX_MS = 2**53


class Scope(StrEnum):
    ACCOUNT = "account"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What a key may do (never its token)."""

    id: str
    """Public name of the key (`k_` + 12 hex): for logs, listing and revoking."""
    scope: Scope
    account: str | None
    """The one account an account-scoped key may read; None for admin keys."""
    created_ms: int
    revoked_ms: int | None = None
    """When it was revoked; a revoked key authenticates nothing."""

    def to_json(self) -> bytes:
        """The Redis copy's form (the digest is the hash field there)."""
        return orjson.dumps(self._fields())

    @classmethod
    def from_json(cls, raw: bytes) -> KeyRecord:
        doc = orjson.loads(raw)
        if not isinstance(doc, dict):
            raise ApiKeyError("?", "", "must be a JSON object")
        return _record(doc.get("id"), doc)

    def may_read(self, account: str) -> bool:
        return self.scope is Scope.ADMIN or self.account == account

    def revoked(self, at_ms: int) -> KeyRecord:
        return replace(self, revoked_ms=at_ms)

    def _fields(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "scope": self.scope.value,
            "account": self.account,
            "created_ms": self.created_ms,
        }
        if self.revoked_ms is not None:
            doc["revoked_ms"] = self.revoked_ms
        return doc


def topic_record(digest: str, record: KeyRecord) -> tuple[bytes, bytes]:
    """The accounts-topic record (key, value) of a key: its digest and record, no token."""
    value = {"id": record.id, "digest": digest, **record._fields()}
    return f"{API_KEY_PREFIX}{record.id}".encode(), orjson.dumps(value)


def parse_topic_record(key_id: str, doc: object) -> tuple[str, KeyRecord]:
    """(digest, record) of an `apikey:<key_id>` value; raises `ApiKeyError` naming the field."""
    if not KEY_ID.fullmatch(key_id):
        raise ApiKeyError(key_id[:40], "", "the key id must be k_ followed by 1 to 32 hex digits")
    if not isinstance(doc, dict):
        raise ApiKeyError(key_id, "", "the value must be a JSON object")
    unknown = sorted(str(k)[:40] for k in doc if k not in _FIELDS)
    if unknown:
        raise ApiKeyError(key_id, unknown[0], "unknown field (a key record holds no token)")
    digest = doc.get("digest")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ApiKeyError(key_id, "digest", "must be the token's SHA-256 in 64 lowercase hex")
    return digest, _record(key_id, doc)


def _record(key_id: object, doc: dict[Any, Any]) -> KeyRecord:
    name = key_id if isinstance(key_id, str) else "?"
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise ApiKeyError(name[:40], "id", "must be k_ followed by 1 to 32 hex digits")
    scope = doc.get("scope")
    if scope not in ("account", "admin"):
        raise ApiKeyError(name, "scope", 'must be "account" or "admin"')
    account = doc.get("account")
    if scope == "admin" and account is not None:
        raise ApiKeyError(name, "account", "an admin key names no account (null)")
    named = isinstance(account, str) and 0 < len(account) <= _MAX_ACCOUNT_CHARS
    if scope == "account" and not named:
        raise ApiKeyError(name, "account", "an account key names its account (1 to 200 chars)")
    created = _ms(name, doc, "created_ms")
    if created is None:
        raise ApiKeyError(name, "created_ms", "required (milliseconds since the epoch)")
    return KeyRecord(name, Scope(scope), account, created, _ms(name, doc, "revoked_ms"))


def _ms(name: str, doc: dict[Any, Any], field: str) -> int | None:
    value = doc.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_MS:
        raise ApiKeyError(name, field, "must be milliseconds since the epoch (an integer)")
    return value
