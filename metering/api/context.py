"""What every route needs, in one object: store, directory, publishers, keys, limits, clock.

Routes depend on the two publishing protocols rather than on Kafka clients so that the HTTP
logic is tested against real Redis without a broker; `server.py` plugs in `ConfigWriter` and a
Kafka producer, and the API follows the accounts topic into the same `Directory` type the
processors use, so both read the same configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request

from metering.api.auth import KeyRecord, KeyRing, Scope, presented_token
from metering.api.freshness import Freshness
from metering.api.problems import Problem
from metering.api.ratelimit import RateLimiter
from metering.api.store_guard import StoreGuard
from metering.core.accounts import Account
from metering.core.directory import Directory
from metering.core.plans import Plan
from metering.core.ports import wall_clock_ms
from metering.state.redis_store import RedisStateStore


class ConfigPublisher(Protocol):
    """Publishes account configuration (sinks.config_writer.ConfigWriter implements it)."""

    async def put_account(self, account: Account) -> None: ...
    async def delete_account(self, account_id: str) -> None: ...


class EventPublisher(Protocol):
    """Produces one usage event (JSON bytes) to the events topic, keyed by account."""

    async def publish(self, account: str, value: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Limits of the HTTP face."""

    rate_per_s: float = 50.0
    """Requests per second per API key (token bucket), and per client address for failures."""
    burst: int = 100
    max_body_bytes: int = 64 * 1024
    key_cache_s: float = 5.0
    """How long a key lookup is cached (a revoked key works at most this much longer)."""
    secure_cookie: bool = False
    """Mark the dashboard cookie Secure (set when served over HTTPS)."""
    retention_days: int = 400
    """Reserved members expire with their set, like the processor's (period end + this)."""
    idempotency_ttl_s: float = 24 * 3600
    """How long the answer of a write with an `Idempotency-Key` is remembered (idempotency.py;
    `METERING_API_IDEMPOTENCY_TTL_S`)."""
    events_per_s: float = 1000.0
    """Events per second per API key at `POST /v1/events` (a bucket of its own, in events, not
    requests; `METERING_API_EVENTS_PER_S`); bursts up to `events_burst`."""
    events_burst: int = 2000
    """Also the most events one batch may hold (`METERING_API_EVENTS_BURST`)."""
    hold_ttl_s: int = 900
    """How long an admission hold lasts uncaptured (`METERING_HOLD_TTL_S`)."""
    store_check_s: float = 1.0
    """How long the store-marker check is cached: a Redis that lost its state is refused at
    most this much later, and the hot path reads the marker at most once per interval."""


@dataclass
class ApiContext:
    store: RedisStateStore
    directory: Directory
    config_publisher: ConfigPublisher
    events: EventPublisher
    keys: KeyRing
    config: ApiConfig = field(default_factory=ApiConfig)
    clock_ms: Callable[[], int] = wall_clock_ms
    freshness: Freshness | None = None
    """Compares the processor's positions with the events topic (usage answers' `freshness`,
    `GET /v1/wait`); runtime/api.py always gives one. None only for an app embedded without
    Kafka (the API tests): `freshness` is then null and the wait routes answer 503."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    """Background work the API cannot serve correctly without (the configuration follower):
    `/healthz` fails once one of them has ended, since nothing restarts it but a restart."""
    limiter: RateLimiter = field(init=False)
    event_limiter: RateLimiter = field(init=False)
    failures: RateLimiter = field(init=False)
    store_guard: StoreGuard = field(init=False)

    def __post_init__(self) -> None:
        self.store_guard = StoreGuard(self.store, interval_s=self.config.store_check_s)
        self.limiter = RateLimiter(self.config.rate_per_s, self.config.burst)
        self.event_limiter = RateLimiter(self.config.events_per_s, self.config.events_burst)
        # Failed authentications per client address: slows down token guessing and floods.
        self.failures = RateLimiter(max(1.0, self.config.rate_per_s / 5), self.config.burst)

    async def principal(self, request: Request) -> KeyRecord:
        """The key of the request (401 without a valid one; 429 past the key's rate)."""
        token = presented_token(request)
        record = await self.keys.find(token) if token else None
        if record is None:
            client = request.client.host if request.client else "?"
            wait = self.failures.take(f"ip:{client}")
            if wait is not None:
                raise _too_many(wait)
            raise Problem(
                401,
                "unauthenticated",
                "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": 'Bearer realm="metering"'},
            )
        wait = self.limiter.take(record.id)
        ratelimit_headers(request, self.limiter.headers(record.id))
        if wait is not None:
            raise _too_many(wait)
        return record

    async def reader(self, request: Request, account: str) -> KeyRecord:
        """A key that may read `account` (its own account key, or an admin key)."""
        record = await self.principal(request)
        if not record.may_read(account):
            raise Problem(403, "forbidden", "this API key may not read that account")
        return record

    async def state_reader(
        self, request: Request, account: str, *, writes: bool = False
    ) -> KeyRecord:
        """Like `reader`, for answers computed from the metered state (usage, history, members,
        tiers, admission): 503 first when the store lost that state (no store marker), and,
        with `writes` (admission), when Redis refuses writes (`store_refusing_writes`).

        The store is checked before the key on purpose: API keys live in the same Redis, so
        after a FLUSHALL every key is unknown too, and a 401 would send callers hunting for a
        revoked key instead of saying what happened. The check is cached (no I/O here).
        """
        await self.store_guard.require(writes=writes)
        return await self.reader(request, account)

    async def admin(self, request: Request) -> KeyRecord:
        record = await self.principal(request)
        if record.scope is not Scope.ADMIN:
            raise Problem(403, "forbidden", "this operation needs an admin API key")
        return record

    def lookup(self, account_id: str) -> tuple[Account, Plan]:
        """The account and its plan (404 when unknown; 409 when its plan is missing)."""
        found = self.directory.lookup(account_id)
        if found is not None:
            return found
        account = self.directory.account(account_id)
        if account is None:
            raise Problem(404, "unknown_account", f"no account {account_id!r}", field="account")
        raise Problem(
            409,
            "unknown_plan",
            f"account {account_id!r} is on plan {account.plan_id!r}, which is not loaded",
            field="plan",
        )


RATELIMIT_STATE = "ratelimit_headers"
"""Where a request's RateLimit fields wait in the ASGI scope's `state` until the response
starts (app.GuardMiddleware adds them to it, problem documents included)."""


def ratelimit_headers(request: Request, headers: dict[str, str]) -> None:
    """Attach the RateLimit fields of the bucket that decided this request (the last call
    wins: the events route replaces the request bucket's fields with the event bucket's)."""
    setattr(request.state, RATELIMIT_STATE, headers)


def _too_many(wait_s: float) -> Problem:
    return Problem(
        429,
        "rate_limited",
        f"too many requests; retry in {wait_s:.2f} s",
        headers={"Retry-After": str(max(1, int(wait_s + 0.999)))},
    )
