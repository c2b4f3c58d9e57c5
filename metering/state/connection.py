"""The connection every client of the store shares: one redis-py client, its Lua scripts,
and the translation of redis-py errors into the error tree.

Every Redis library error is translated here into `StateStoreUnavailable` (retriable),
`StateStoreRefusingWrites` (Redis answers but refuses writes: MISCONF, OOM, READONLY; retriable
too) or `StateStoreError` (a bug or a misconfiguration), so callers never see `redis.*`
exceptions.
The modules beside this one each serve one client of the store (usage.py the processor,
outbox.py the publisher, close.py the closer, reads.py the API's reads and admission,
api_keys.py the API's keys); redis_store.py puts them together.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Self

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from metering.core.deltas import Aggregation
from metering.core.errors import (
    StateStoreError,
    StateStoreRefusingWrites,
    StateStoreUnavailable,
)
from metering.state import keys


def load_script(name: str) -> str:
    return resources.files("metering.state").joinpath("lua", name).read_text(encoding="utf-8")


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Translate redis-py errors raised inside the block into our own types."""
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise StateStoreUnavailable(f"Redis unavailable during {what}: {exc}") from exc
    except redis_errors.RedisError as exc:
        cause = write_refusal(exc)
        if cause is not None:
            raise StateStoreRefusingWrites(
                f"Redis refuses writes ({cause}) during {what}: {exc}", cause
            ) from exc
        raise StateStoreError(f"Redis refused {what}: {exc}") from exc


_REFUSAL = re.compile(r"\b(MISCONF|OOM|READONLY)\b")


def write_refusal(exc: redis_errors.RedisError) -> str | None:
    """The cause when `exc` is Redis refusing writes (`StateStoreRefusingWrites.CAUSES`).

    redis-py has classes for OOM and READONLY (whose messages lose the code) but not for
    MISCONF, and an error raised inside a script may reach us as text with the refusal's code
    further on: classes first, then the code in the message.
    """
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return StateStoreRefusingWrites.CAUSES["OOM"]
    if isinstance(exc, redis_errors.ReadOnlyError):
        return StateStoreRefusingWrites.CAUSES["READONLY"]
    if not isinstance(exc, redis_errors.ResponseError):
        return None
    found = _REFUSAL.search(str(exc))
    return None if found is None else StateStoreRefusingWrites.CAUSES[found.group(1)]


class RedisConnection:
    """A redis-py client and the scripts loaded on it (shared by every client module)."""

    _admit_members: AsyncScript | None = None
    """Registered on first use (only the API admits members)."""
    _admit_gauge: AsyncScript | None = None
    """Registered on first use (only the API admits additions to gauges)."""
    _close: AsyncScript | None = None
    """Registered on first use (only the closer closes periods)."""
    _holds_script: AsyncScript | None = None
    """Registered on first use (only the API places and releases admission holds)."""

    def __init__(
        self, client: aioredis.Redis, *, cluster: bool = False, steps_per_call: int = 200
    ) -> None:
        self._client = client
        self._cluster = cluster
        self._steps_per_call = steps_per_call
        self._apply: AsyncScript = client.register_script(load_script("apply.lua"))
        self._advance: AsyncScript = client.register_script(load_script("advance_position.lua"))
        self._ack: AsyncScript = client.register_script(load_script("ack_outbox.lua"))
        self._release: AsyncScript = client.register_script(load_script("release.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_s: float = 5.0,
        cluster: bool = False,
        client_retries: int | None = None,
    ) -> Self:
        """Connect lazily to `url` (redis:// or rediss://; credentials stay out of logs).

        `client_retries` 0 turns off redis-py's own reconnect-and-resend (10 tries by
        default): the processor retries itself and checks the store marker before it sends
        a write again, so a write is never silently re-sent to a Redis that came back empty.
        """
        options: dict[str, Any] = {}
        if client_retries is not None:
            options["retry"] = Retry(NoBackoff(), client_retries)
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            **options,
        )
        return cls(client, cluster=cluster)

    @classmethod
    def for_api(
        cls, url: str, *, timeout_s: float = 5.0, max_connections: int = 64
    ) -> Self:
        """Like `from_url`, but requests beyond `max_connections` wait for a free connection
        (up to `timeout_s`) instead of failing with "Too many connections": an HTTP server
        has as many concurrent callers as clients send, unlike the processor's one pipeline.

        A command that fails with a connection error is sent once more on a fresh connection:
        after a Redis restart, every pooled connection is dead, and without the retry the first
        request on each answered 503. Only connection errors (not timeouts, after which the
        command may still be running), and only once, so a Redis that is really down is still
        reported at once. Safe because every write the API makes has the same effect when
        repeated: API key records (HSET, HDEL), the readiness probe (SET) and admission's
        reservations (set members, lua/admit_members.lua)."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
        )
        return cls(aioredis.Redis.from_pool(pool))  # closing the client closes the pool

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def ping(self) -> None:
        """Raise `StateStoreUnavailable` unless Redis answers."""
        async with translated("PING"):
            await self._client.ping()


def raw(value: bytes | str) -> bytes:
    """Replies are bytes (decode_responses is off); the typing allows str too."""
    return value if isinstance(value, bytes) else value.encode()


def text(value: bytes | str | None) -> str:
    """Replies are bytes (decode_responses is off); the typing allows str and None too."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else value


def queue_amount(pipe: Any, account: str, meter: str, period: str, agg: Aggregation) -> None:
    """Queue the read of one (meter, period)'s amount on `pipe` (count/sum, balance, sets)."""
    if agg in (Aggregation.COUNT, Aggregation.SUM):
        pipe.get(keys.counter_key(account, meter, period))
    elif agg is Aggregation.BALANCE:
        pipe.get(keys.balance_key(account, meter))
    elif agg is Aggregation.DISTINCT:
        pipe.scard(keys.distinct_key(account, meter, period))
    else:
        pipe.scard(keys.gauge_key(account, meter))
