"""The API refuses to answer from a Redis that lost the processor's state (no store marker), and
answers again once a processor wrote the marker back; the check is cached, so requests within
an interval cost no marker read. Against the real Redis of the test stack.

The store is emptied with FLUSHDB on the test's own database: for the store that is FLUSHALL
(one database is one store), without emptying the databases of other tests and sessions that
share the test stack. The guard's clock is a fake one, so "within the interval" and "after it"
are exact instead of timed.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis

from metering.api.app import create_app
from metering.api.auth import KeyRing
from metering.api.context import ApiContext
from metering.api.store_guard import StoreGuard
from metering.core.errors import StateStoreUnavailable
from metering.state.keys import API_KEYS
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import Api, Recorder, directory_with_examples
from tests.api.server import free_port

GUARDED = [
    ("GET", "/v1/accounts/acton/usage", None),
    ("GET", "/v1/accounts/apsis/meters/email_sendings/history", None),
    ("GET", "/v1/accounts/acton/meters/active_contacts/members", None),
    ("GET", "/v1/accounts/clerk/tiers", None),
    ("POST", "/v1/accounts/acton/admission/messages", {"contacts": ["new", "old"]}),
    ("POST", "/v1/accounts/ac/admission/contacts", {"contacts": ["c"], "origin": "api"}),
    ("POST", "/v1/accounts/ac/admission/campaigns", {"action": "campaign.send"}),
    ("POST", "/v1/accounts/ac/admission/automations", {"contacts": ["c"]}),
    ("POST", "/v1/accounts/apsis/admission/sms", {"messages": 1}),
]


class CountingMarker:
    """The store's marker read, counted."""

    def __init__(self, store: RedisStateStore) -> None:
        self.store = store
        self.reads = 0

    async def readiness(self) -> tuple[str | None, int, str | None]:
        self.reads += 1
        return await self.store.readiness()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def statuses(api: Api) -> list[int]:
    found = []
    for method, path, body in GUARDED:
        response = await api.client.request(method, path, json=body, headers=api.as_admin())
        found.append(response.status_code)
    return found


def assert_not_initialised(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    doc = response.json()
    assert doc["code"] == "store_not_initialised"
    assert doc["title"] == "State store not initialised"
    assert doc["type"] == "https://metering.invalid/problems/store_not_initialised"
    assert "store marker" in doc["detail"]


@pytest.mark.integration
async def test_a_flushed_store_is_refused_within_the_interval_and_answers_once_marked_again(
    api: Api, store: RedisStateStore, redis: aioredis.Redis
) -> None:
    clock = Clock()
    marker = CountingMarker(store)
    api.ctx.store_guard = StoreGuard(marker, interval_s=1.0, clock=clock)

    assert await statuses(api) == [200] * len(GUARDED)
    assert marker.reads == 1  # eight requests, one marker read: nothing per request

    keys = await redis.hgetall(API_KEYS)
    await redis.flushdb()  # Redis lost everything: counters, reservations, the marker, API keys
    await redis.hset(API_KEYS, mapping=keys)  # keys restored, so that only the marker is missing
    clock.now += 0.999  # within the interval the cached check still says "present"
    assert await api.ctx.store_guard.present()
    assert marker.reads == 1

    clock.now += 0.001  # the interval is over: the next request reads the marker
    for method, path, body in GUARDED:
        response = await api.client.request(method, path, json=body, headers=api.as_admin())
        assert_not_initialised(response)
    assert marker.reads == 2
    # Refused before authentication: a missing key is not what the caller must fix.
    assert_not_initialised(await api.client.get("/v1/accounts/acton/usage"))
    # Nothing was reserved into the emptied store.
    assert await redis.exists("mtr:{acton}:s:active_contacts:2026-11") == 0
    # Reads that do not come from the metered state still work.
    assert (await api.client.get("/v1/accounts/acton", headers=api.as_admin())).status_code == 200
    assert (await api.client.get("/healthz")).status_code == 200  # alive: a restart won't help
    assert_not_initialised(await api.client.get("/readyz"))

    await store.claim_store_marker("rebuilt")  # a processor took the store over again
    assert (
        await api.client.get("/v1/accounts/acton/usage", headers=api.as_admin())
    ).status_code == 503
    clock.now += 1.0
    assert await statuses(api) == [200] * len(GUARDED)
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "redis": "reachable",
        "store_marker": "present",
        "writes": "accepted",
    }


@pytest.mark.integration
async def test_concurrent_requests_at_a_stale_check_share_one_marker_read(
    api: Api, store: RedisStateStore
) -> None:
    clock = Clock()
    marker = CountingMarker(store)
    api.ctx.store_guard = StoreGuard(marker, interval_s=1.0, clock=clock)
    responses = await asyncio.gather(
        *(
            api.client.post(
                "/v1/accounts/acton-big/admission/messages",
                json={"contacts": [f"c{i}"]},
                headers=api.as_admin(),
            )
            for i in range(20)
        )
    )
    assert [r.status_code for r in responses] == [200] * 20
    assert marker.reads == 1


@pytest.mark.integration
async def test_an_unreachable_redis_is_not_ready_and_reads_say_unavailable() -> None:
    gone = RedisStateStore.for_api(f"redis://127.0.0.1:{free_port()}/0", timeout_s=2.0)
    recorder = Recorder()
    ctx = ApiContext(
        store=gone,
        directory=directory_with_examples(),
        config_publisher=recorder,
        events=recorder,
        keys=KeyRing(gone),
    )
    transport = httpx.ASGITransport(app=create_app(ctx))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            for path in ("/readyz", "/v1/accounts/acton/usage"):
                response = await client.get(path)
                assert response.status_code == 503, response.text
                assert response.json()["code"] == "unavailable"
                assert response.headers["retry-after"] == "1"
    finally:
        await gone.close()


async def test_a_failed_marker_read_is_not_cached() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.answers: list[str | Exception | None] = [
                StateStoreUnavailable("down"),
                "m",
            ]

        async def readiness(self) -> tuple[str | None, int, str | None]:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer, 0, None

    clock = Clock()
    guard = StoreGuard(Flaky(), interval_s=1.0, clock=clock)
    with pytest.raises(StateStoreUnavailable):
        await guard.present()
    assert await guard.present()  # read again at once, not "absent" for an interval


@pytest.mark.integration
async def test_a_store_being_rebuilt_is_refused_until_every_replay_reached_its_target(
    api: Api, store: RedisStateStore
) -> None:
    """A processor rebuilding after a loss records each partition's replay target before it
    writes the marker back; the API refuses while any target is left (counters are partial)."""
    clock = Clock()
    api.ctx.store_guard = StoreGuard(CountingMarker(store), interval_s=1.0, clock=clock)
    await store.mark_rebuilding("usage", 0, 1200)
    await store.mark_rebuilding("usage", 3, 800)
    for method, path, body in GUARDED:
        response = await api.client.request(method, path, json=body, headers=api.as_admin())
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        doc = response.json()
        assert (doc["code"], doc["title"]) == ("store_rebuilding", "State store being rebuilt")
        assert "2 partition(s) still replaying" in doc["detail"]
    assert (await api.client.get("/readyz")).json()["code"] == "store_rebuilding"
    assert await store.rebuilding_targets("usage", [0, 1, 3]) == {0: 1200, 3: 800}

    await store.finish_rebuilding("usage", [3])
    clock.now += 1.0
    response = await api.client.get("/v1/accounts/acton/usage", headers=api.as_admin())
    assert "1 partition(s) still replaying" in response.json()["detail"]

    await store.finish_rebuilding("usage", [0])
    clock.now += 1.0
    assert await statuses(api) == [200] * len(GUARDED)
    assert (await api.client.get("/readyz")).status_code == 200
