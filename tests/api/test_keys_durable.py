"""API keys outlive Redis (issue 21, item 4), on the real Kafka and Redis of the test stack.

Keys are created through a running API process's ring (what `metering api-keys create` and the
admin API do: the record to the accounts topic, a copy to Redis); then the test's Redis
database is flushed (FLUSHDB of this test's own database: the shared stack is never flushed
whole). A running API process and a new one both accept the keys again, nobody re-creating
them; a revocation reaches the other process (401) even when a copy of the key is put back
in Redis; no token is in any topic record or log line.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio

from metering.api.app import create_app
from metering.api.auth import KeyRecord, Scope, digest
from metering.api.context import ApiConfig, ApiContext
from metering.runtime.api import running
from metering.settings import Settings
from tests.integration.harness import (
    TopicFactory,
    make_settings,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

CONFIG = ApiConfig(rate_per_s=1000, burst=1000, key_cache_s=0.0)
"""No key cache: each answer below comes from the process's directory or Redis, not a cache."""


@asynccontextmanager
async def api_process(settings: Settings) -> AsyncIterator[tuple[ApiContext, httpx.AsyncClient]]:
    async with running(settings, CONFIG) as ctx:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield ctx, client


async def me(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    await publish_config(s, [{"id": "acme", "plan": "it-plan"}])
    return s


async def test_keys_survive_a_flush_and_revocation_reaches_every_process(
    settings: Settings, redis: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with api_process(settings) as (ctx, running_api):
        admin, _ = await ctx.keys.create(Scope.ADMIN)
        account, record = await ctx.keys.create(Scope.ACCOUNT, "acme")
        assert await me(running_api, admin) == 200
        assert await me(running_api, account) == 200

        await redis.flushdb()  # a Redis loss: every key copy (and all state) gone
        assert await redis.hlen("mtr:api-keys") == 0
        assert await me(running_api, admin) == 200
        assert await me(running_api, account) == 200

        async with api_process(settings) as (new_ctx, new_api):
            assert await me(new_api, admin) == 200
            assert await me(new_api, account) == 200
            assert await me(new_api, "mk_" + "x" * 43) == 401

            # Revoked through the new process; the running one reads it from the topic.
            assert await new_ctx.keys.revoke(key_id=record.id) == 1
            assert await me(new_api, account) == 401

            async def refused() -> bool:
                return await me(running_api, account) == 401

            await wait_until(refused, what="the running API to apply the revocation")
            # A stale copy in Redis (a backup restored, a revocation's delete lost) cannot
            # bring the key back: the topic says it is revoked.
            await redis.hset("mtr:api-keys", digest(account), record.to_json())
            assert await me(running_api, account) == 401
            assert await me(new_api, account) == 401
            assert await me(new_api, admin) == 200

    records = await read_topic(settings, settings.accounts_topic, expect=5)
    key_records = [r for r in records if r.key.startswith(b"apikey:")]
    assert len(key_records) == 3  # two created, one revoked
    everything = b"".join((r.key or b"") + (r.value or b"") for r in records)
    for token in (admin, account):
        assert token.encode() not in everything
        assert token[3:].encode() not in everything
        assert token not in caplog.text
    assert digest(account).encode() in everything


async def test_keys_kept_only_in_redis_work_and_migrate_to_the_topic(
    settings: Settings, redis: redis.asyncio.Redis
) -> None:
    """A key from before keys were on the topic: it works from Redis; `migrate` (what
    `metering api-keys migrate` runs) puts it on the topic, so it outlives a flush."""
    legacy = "mk_" + "L" * 43
    old = KeyRecord("k_00000000beef", Scope.ACCOUNT, "acme", 1_700_000_000_000)
    await redis.hset("mtr:api-keys", digest(legacy), old.to_json())
    async with api_process(settings) as (ctx, client):
        assert await me(client, legacy) == 200
        assert [r.id for r in (await ctx.keys.unmigrated()).values()] == [old.id]
        assert [r.id for r in await ctx.keys.migrate()] == [old.id]
        assert await ctx.keys.unmigrated() == {}
        assert await ctx.keys.migrate() == []
    await redis.flushdb()
    async with api_process(settings) as (_, client):
        assert await me(client, legacy) == 200
