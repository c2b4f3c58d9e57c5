"""A Redis that answers but refuses writes (MISCONF, OOM, READONLY): readiness goes false,
liveness stays true, admission answers 503 `store_refusing_writes` naming the cause, reads still
answer; all recover once Redis accepts writes again.

Each test breaks a private redis-server of its own (tests/reliability/infra.py), never the
shared test stack: a failed save with `stop-writes-on-bgsave-error` (its data directory removed
under it), `maxmemory 1` under `noeviction`, `REPLICAOF` a port where nobody listens.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.core.errors import StateStoreRefusingWrites
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import Api, build_api
from tests.reliability.infra import PrivateRedis, free_port

ADMISSION = ("/v1/accounts/acton/admission/messages", {"contacts": ["new", "old"]})


class MovableRedis(PrivateRedis):
    """A private Redis whose data directory `CONFIG SET dir` may move (a protected setting)."""

    def _config(self) -> Path:
        path = super()._config()
        path.write_text(path.read_text() + "enable-protected-configs yes\n")
        return path


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = MovableRedis(tmp_path / "redis")
    server.start()
    client = server.client()
    try:
        # Saving must be able to fail without Redis exiting (an AOF write error under
        # `appendfsync always` stops the server): snapshots only, stop writes when one fails.
        client.config_set("appendonly", "no")
        client.config_set("stop-writes-on-bgsave-error", "yes")
    finally:
        client.close()
    yield server
    server.close()


async def _api(server: PrivateRedis, store_check_s: float) -> AsyncIterator[Api]:
    store = RedisStateStore.for_api(server.url)
    config = ApiConfig(rate_per_s=10_000, burst=10_000, store_check_s=store_check_s)
    ctx, recorder, admin, tokens = await build_api(store, config)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield Api(ctx, client, recorder, admin, tokens)
    await store.close()


@pytest.fixture
async def api(private_redis: PrivateRedis) -> AsyncIterator[Api]:
    """The API over the private Redis, reading the store's state afresh for every request."""
    async for api in _api(private_redis, store_check_s=0.0):
        yield api


@pytest.fixture
async def cached_api(private_redis: PrivateRedis) -> AsyncIterator[Api]:
    """The API over the private Redis, trusting its last readiness read for an hour."""
    async for api in _api(private_redis, store_check_s=3600.0):
        yield api


def refuse_saving(server: PrivateRedis, tmp: Path) -> Callable[[], None]:
    """MISCONF: the data directory vanishes, a BGSAVE fails, Redis stops accepting writes."""
    client = server.client()
    gone = tmp / "gone"
    gone.mkdir(parents=True)
    client.config_set("save", "3600 1")  # Redis stops writes only when it has save points
    client.config_set("dir", str(gone))
    shutil.rmtree(gone)
    client.bgsave()
    _wait_for(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err")

    def heal() -> None:
        back = tmp / "back"
        back.mkdir(parents=True)
        client.config_set("dir", str(back))
        client.bgsave()
        _wait_for(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "ok")
        client.close()

    return heal


def refuse_memory(server: PrivateRedis, tmp: Path) -> Callable[[], None]:
    """OOM: maxmemory far below what Redis already uses, with the noeviction policy."""
    client = server.client()
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    client.config_set("maxmemory", "1")

    def heal() -> None:
        client.config_set("maxmemory", "0")
        client.close()

    return heal


def refuse_as_replica(server: PrivateRedis, tmp: Path) -> Callable[[], None]:
    """READONLY: the server becomes a replica of a master that does not exist."""
    client = server.client()
    client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))

    def heal() -> None:
        client.execute_command("REPLICAOF", "NO", "ONE")
        client.close()

    return heal


def _wait_for(condition: Callable[[], bool]) -> None:
    """Poll a fast condition (a background save of a nearly empty Redis): no timing asserted."""
    for _ in range(2000):
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError("condition never held")


BREAKS = {
    "persistence": refuse_saving,
    "out_of_memory": refuse_memory,
    "read_only": refuse_as_replica,
}


def assert_refusing(response: httpx.Response, cause: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    doc = response.json()
    assert doc["code"] == "store_refusing_writes"
    assert doc["type"] == "https://metering.invalid/problems/store_refusing_writes"
    assert doc["cause"] == cause
    assert doc["title"] == "State store refusing writes"


@pytest.mark.integration
@pytest.mark.parametrize("cause", sorted(BREAKS))
async def test_readiness_and_admission_refuse_while_redis_refuses_writes(
    api: Api, private_redis: PrivateRedis, tmp_path: Path, cause: str
) -> None:
    path, body = ADMISSION
    assert (await api.client.get("/readyz")).status_code == 200
    assert (await api.client.post(path, json=body, headers=api.as_admin())).status_code == 200

    heal = BREAKS[cause](private_redis, tmp_path)

    assert_refusing(await api.client.get("/readyz"), cause)
    assert (await api.client.get("/healthz")).status_code == 200  # alive: it recovers alone
    assert_refusing(await api.client.post(path, json=body, headers=api.as_admin()), cause)
    # Reads answer from what Redis holds (and API keys, which live there, still work).
    usage = await api.client.get("/v1/accounts/acton/usage", headers=api.as_admin())
    assert usage.status_code == 200, usage.text

    heal()

    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["writes"] == "accepted"
    admitted = await api.client.post(path, json=body, headers=api.as_admin())
    assert admitted.status_code == 200, admitted.text


@pytest.mark.integration
@pytest.mark.parametrize("cause", sorted(BREAKS))
async def test_a_write_refused_before_the_check_noticed_is_a_503_naming_the_cause(
    cached_api: Api, private_redis: PrivateRedis, tmp_path: Path, cause: str
) -> None:
    """The guard's cached read still says "writable": the admission script's own write is
    refused, and that error (raised inside a Lua script) is recognised too."""
    api = cached_api
    path, _ = ADMISSION
    first = await api.client.post(path, json={"contacts": ["a"]}, headers=api.as_admin())
    assert first.status_code == 200

    heal = BREAKS[cause](private_redis, tmp_path)
    try:
        response = await api.client.post(path, json={"contacts": ["b"]}, headers=api.as_admin())
        assert_refusing(response, cause)
    finally:
        heal()


@pytest.mark.integration
async def test_the_store_translates_each_refusal(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    store = RedisStateStore.for_api(private_redis.url)
    try:
        for cause, breaks in sorted(BREAKS.items()):
            heal = breaks(private_redis, tmp_path / cause)
            try:
                with pytest.raises(StateStoreRefusingWrites) as raised:
                    await store.put_api_key("digest", b"{}")
                assert raised.value.cause == cause
                assert (await store.readiness())[2] == cause
            finally:
                heal()
            assert (await store.readiness())[2] is None
    finally:
        await store.close()
