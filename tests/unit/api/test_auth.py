"""API keys and the rate limiter, without Redis (an in-memory key store)."""

from __future__ import annotations

import hashlib

import pytest
from starlette.requests import Request

from metering.api.auth import COOKIE, KeyRecord, KeyRing, Scope, digest, presented_token
from metering.api.problems import Problem
from metering.api.ratelimit import RateLimiter


class MemoryKeys:
    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}
        self.reads = 0

    async def put_api_key(self, digest: str, record: bytes) -> None:
        self.rows[digest] = record

    async def api_key(self, digest: str) -> bytes | None:
        self.reads += 1
        return self.rows.get(digest)

    async def api_keys(self) -> dict[str, bytes]:
        return dict(self.rows)

    async def delete_api_keys(self, digests: list[str]) -> int:
        return sum(1 for d in digests if self.rows.pop(d, None) is not None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_tokens_are_random_prefixed_and_stored_only_as_sha256() -> None:
    store = MemoryKeys()
    ring = KeyRing(store)
    token, record = await ring.create(Scope.ACCOUNT, "acme")
    other, _ = await ring.create(Scope.ACCOUNT, "acme")
    assert token.startswith("mk_")
    assert len(token) >= 40
    assert token != other
    assert next(iter(store.rows)) == hashlib.sha256(token.encode()).hexdigest() == digest(token)
    assert token.encode() not in b"".join(store.rows.values())
    assert await ring.find(token) == record
    assert record.may_read("acme")
    assert not record.may_read("other")


async def test_admin_keys_read_everything_and_scopes_are_checked_at_creation() -> None:
    ring = KeyRing(MemoryKeys())
    _, admin = await ring.create(Scope.ADMIN)
    assert admin.may_read("anyone")
    assert admin.account is None
    with pytest.raises(ValueError, match="account key"):
        await ring.create(Scope.ACCOUNT)
    with pytest.raises(ValueError, match="account key"):
        await ring.create(Scope.ADMIN, "acme")


async def test_lookups_are_cached_and_revocation_takes_effect_after_the_cache() -> None:
    store, clock = MemoryKeys(), Clock()
    ring = KeyRing(store, cache_s=5, clock=clock)
    token, record = await ring.create(Scope.ACCOUNT, "acme")
    assert await ring.find(token) == record
    assert await ring.find(token) == record
    assert store.reads == 1
    # Revoked elsewhere (another process): this one still trusts its cache for 5 s.
    store.rows.clear()
    assert await ring.find(token) == record
    clock.now += 5.1
    assert await ring.find(token) is None
    # Unknown tokens are cached too (a flood of bad keys does not flood Redis).
    reads = store.reads
    assert await ring.find("mk_unknown") is None
    assert await ring.find("mk_unknown") is None
    assert store.reads == reads + 1
    assert await ring.find("not-a-key") is None
    assert store.reads == reads + 1  # no lookup at all for a token without the prefix


async def test_revoke_by_id_and_by_account() -> None:
    ring = KeyRing(MemoryKeys(), cache_s=0)
    a1, r1 = await ring.create(Scope.ACCOUNT, "a")
    a2, _ = await ring.create(Scope.ACCOUNT, "a")
    b, _ = await ring.create(Scope.ACCOUNT, "b")
    assert await ring.revoke(key_id=r1.id) == 1
    assert await ring.find(a1) is None
    assert await ring.find(a2) is not None
    assert await ring.revoke(account="a") == 1
    assert [r.account for r in await ring.records()] == ["b"]
    assert await ring.find(b) is not None


def test_records_round_trip() -> None:
    record = KeyRecord("k_1", Scope.ACCOUNT, "acme", 123)
    assert KeyRecord.from_json(record.to_json()) == record


def request(method: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "headers": raw, "path": "/"})


def test_the_token_comes_from_the_bearer_header_or_the_cookie_on_safe_methods() -> None:
    assert presented_token(request("POST", {"Authorization": "Bearer mk_a"})) == "mk_a"
    assert presented_token(request("GET", {"Authorization": "bearer  mk_a "})) == "mk_a"
    assert presented_token(request("GET", {"Cookie": f"{COOKIE}=mk_c"})) == "mk_c"
    assert presented_token(request("POST", {"Cookie": f"{COOKIE}=mk_c"})) is None
    for bad in ("Basic abc", "Bearer", "Token mk_a"):
        with pytest.raises(Problem) as caught:
            presented_token(request("GET", {"Authorization": bad}))
        assert caught.value.status == 401


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    assert [limiter.take("k") for _ in range(3)] == [None, None, None]
    wait = limiter.take("k")
    assert wait == pytest.approx(0.5)
    assert limiter.take("other") is None  # buckets are per key
    clock.now += 0.5
    assert limiter.take("k") is None
    assert limiter.take("k") is not None
    clock.now += 100
    assert [limiter.take("k") for _ in range(4)].count(None) == 3  # refills up to the burst
    with pytest.raises(ValueError, match="rate_per_s"):
        RateLimiter(0, 1)
