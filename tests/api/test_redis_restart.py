"""After a Redis restart every pooled connection is dead: the API sends the command once more
on a fresh connection, so the first request after the restart answers 200 instead of 503.

A private redis-server (tests/reliability/infra.py) is restarted, never the shared test stack;
its append-only file keeps the store marker and the API keys across the restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import Api, build_api
from tests.reliability.infra import PrivateRedis

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.close()


@pytest.fixture
async def api(private_redis: PrivateRedis) -> AsyncIterator[Api]:
    store = RedisStateStore.for_api(private_redis.url)
    config = ApiConfig(rate_per_s=10_000, burst=10_000, store_check_s=0.0)
    ctx, recorder, admin, tokens = await build_api(store, config)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield Api(ctx, client, recorder, admin, tokens)
    await store.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_the_first_request_after_a_redis_restart_succeeds(
    api: Api, private_redis: PrivateRedis, how: str
) -> None:
    usage = "/v1/accounts/acton/usage"
    admission = "/v1/accounts/acton/admission/messages"
    assert (await api.client.get(usage, headers=api.as_admin())).status_code == 200

    getattr(private_redis, how)()
    private_redis.start()
    response = await api.client.get(usage, headers=api.as_admin())
    assert response.status_code == 200, response.text

    getattr(private_redis, how)()
    private_redis.start()
    response = await api.client.post(
        admission, json={"contacts": ["a"]}, headers=api.as_account("acton")
    )
    assert response.status_code == 200, response.text
    assert (response.json()["allowed"], response.json()["admitted"]) == (True, 1)

    getattr(private_redis, how)()
    private_redis.start()
    assert (await api.client.get("/readyz")).status_code == 200
