"""Atomic admission: concurrent senders never overshoot; the Act-On seed's own numbers."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
import redis.asyncio as aioredis

from metering.api.app import create_app
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import Api, build_api

pytestmark = pytest.mark.integration

SET = "mtr:{acton}:s:active_contacts:2026-11"


async def test_parallel_admissions_never_exceed_the_limit(
    api: Api, redis_url: str, redis: aioredis.Redis
) -> None:
    """300 requests from two API processes (own Redis connections), overlapping contacts."""
    limit = 50
    response = await api.client.put(
        "/v1/accounts/acton/limits/active_contacts", json={"limit": limit}, headers=api.as_admin()
    )
    assert response.status_code == 200
    other_store = RedisStateStore.for_api(redis_url)
    ctx2, *_ = await build_api(other_store)
    ctx2.directory = api.ctx.directory  # the same configuration, as followed from the topic
    token = api.tokens["acton"]
    rng = random.Random(7)
    pool = [f"contact-{i}" for i in range(400)]
    bodies = [{"contacts": rng.sample(pool, rng.randint(1, 4))} for _ in range(300)]
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ctx2)), base_url="http://api2.test"
        ) as client2:
            clients = [api.client, client2]
            results = await asyncio.gather(
                *(
                    clients[i % 2].post(
                        "/v1/accounts/acton/admission/messages",
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    for i, body in enumerate(bodies)
                )
            )
    finally:
        await other_store.close()
    assert {r.status_code for r in results} == {200}
    admitted_new = set()
    refused = set()
    for r in results:
        for item in r.json()["items"]:
            if item["reason"] == "within_limit":
                assert item["item"] not in admitted_new, "a contact was admitted as new twice"
                admitted_new.add(item["item"])
            elif not item["allowed"]:
                refused.add(item["item"])
    members = {m.decode() for m in await redis.smembers(SET)}
    assert len(admitted_new) == limit
    assert members == admitted_new
    assert refused
    assert not refused & members
    # Once full, only the admitted contacts pass.
    for r in results:
        for item in r.json()["items"]:
            assert item["allowed"] == (item["item"] in members)


async def test_acton_seed_10000_contracted_10001st_refused_rotation_next_month(
    store: RedisStateStore, redis: aioredis.Redis
) -> None:
    """The seed's numbers through the admission script: 10,000 of a 50,000-address list."""
    addresses = [f"addr-{i:05d}@example.com" for i in range(50_000)]
    common = {
        "limit": 10_000,
        "hard": True,
        "period_start_ms": 1,
        "period_end_ms": 2,
        "expire_at_s": 0,
    }
    size, codes = await store.admit_members(
        "acme", "active_contacts", "2026-11", addresses[:10_000], **common
    )
    assert (size, codes) == (10_000, "a" * 10_000)
    size, codes = await store.admit_members(
        "acme", "active_contacts", "2026-11", [addresses[10_000]], **common
    )
    assert (size, codes) == (10_000, "r")  # the 10,001st new contact: refused
    # "You can still send as many messages as you would like to your currently active contacts."
    size, codes = await store.admit_members(
        "acme", "active_contacts", "2026-11", addresses[:10_000], **common
    )
    assert (size, codes) == (10_000, "c" * 10_000)
    assert await redis.scard("mtr:{acme}:s:active_contacts:2026-11") == 10_000
    # "You can rotate which 10,000 users you send to each month": December starts at 0.
    size, codes = await store.admit_members(
        "acme", "active_contacts", "2026-12", addresses[40_000:], **common
    )
    assert (size, codes) == (10_000, "a" * 10_000)
    size, codes = await store.admit_members(
        "acme", "active_contacts", "2026-12", addresses[:1], **common
    )
    assert codes == "r"
