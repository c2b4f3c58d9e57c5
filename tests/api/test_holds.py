"""Admission holds through the HTTP API: concurrent requests never take the same last units.

1,000 requests race for the last 50 units of an e-mail quota (in `limit` mode) and of a prepaid
SMS balance, from two API processes (own Redis connections): exactly 50 are admitted, and the
held units account for every one of them. Release and expiry free exactly what was held.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.core.account_codec import account_from_json
from metering.core.plan_loading import load_plan
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import NOW, Api, build_api

pytestmark = pytest.mark.integration

PLAN = Path(__file__).parents[1] / "integration" / "plans" / "holds-plan.toml"
EMAILS = "mtr:{holder}:c:emails:2026-11"
CREDITS = "mtr:{holder}:b:sms_credits"


def _with_plan(api: Api) -> None:
    api.ctx.directory.put_plan(load_plan(PLAN))
    api.ctx.directory.put_account(account_from_json({"id": "holder", "plan": "holds-plan"}))


async def _race(
    api: Api, redis_url: str, path: str, body: dict[str, object]
) -> list[dict[str, Any]]:
    """1,000 concurrent requests, alternating between two API processes."""
    other_store = RedisStateStore.for_api(redis_url)
    ctx2, *_ = await build_api(other_store)
    ctx2.directory = api.ctx.directory
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ctx2)), base_url="http://api2.test"
        ) as client2:
            clients = [api.client, client2]
            results = await asyncio.gather(
                *(
                    clients[i % 2].post(path, json=body, headers=api.as_admin())
                    for i in range(1000)
                )
            )
    finally:
        await other_store.close()
    assert {r.status_code for r in results} == {200}, {r.text for r in results}
    return [r.json() for r in results]


async def test_1000_concurrent_emails_against_the_last_50_admit_exactly_50(
    api: Api, redis_url: str, redis: aioredis.Redis
) -> None:
    _with_plan(api)
    await redis.set(EMAILS, 950)
    docs = await _race(
        api, redis_url, "/v1/accounts/holder/admission/messages", {"contacts": ["c-1"]}
    )
    admitted = [d for d in docs if d["allowed"]]
    assert len(admitted) == 50
    assert {d["reason"] for d in docs if not d["allowed"]} == {"limit_reached"}
    holds = {d["hold"]["id"] for d in admitted}
    assert len(holds) == 50
    assert all(d["hold"] is None for d in docs if not d["allowed"])
    assert int(await redis.hget("mtr:{holder}:ht", "emails:2026-11")) == 50
    assert int(await redis.get(EMAILS)) == 950  # holds are not usage
    usage = (await api.client.get("/v1/accounts/holder/usage", headers=api.as_admin())).json()
    emails = next(m for m in usage["meters"] if m["meter"] == "emails")
    assert (emails["used"], emails["held"]) == (950, 50)


async def test_1000_concurrent_sms_against_the_last_50_credits_admit_exactly_50(
    api: Api, redis_url: str, redis: aioredis.Redis
) -> None:
    _with_plan(api)
    await redis.set(CREDITS, 50)
    docs = await _race(api, redis_url, "/v1/accounts/holder/admission/sms", {"messages": 1})
    admitted = [d for d in docs if d["allowed"]]
    assert len(admitted) == 50
    assert {d["reason"] for d in docs if not d["allowed"]} == {"insufficient_credits"}
    assert int(await redis.hget("mtr:{holder}:ht", "sms_credits:")) == 50
    assert int(await redis.get(CREDITS)) == 50


async def test_release_frees_exactly_what_the_hold_still_holds(
    api: Api, redis: aioredis.Redis
) -> None:
    _with_plan(api)
    await redis.set(CREDITS, 10)
    first = await api.client.post(
        "/v1/accounts/holder/admission/sms",
        json={"messages": 3, "segments": 2},
        headers=api.as_admin(),
    )
    hold = first.json()["hold"]
    assert hold["units"] == {"sms_credits": 6}
    refused = await api.client.post(
        "/v1/accounts/holder/admission/sms",
        json={"messages": 1, "segments": 5},
        headers=api.as_admin(),
    )
    assert refused.json()["allowed"] is False  # 10 - 6 held < 5
    released = await api.client.delete(
        f"/v1/accounts/holder/holds/{hold['id']}", headers=api.as_admin()
    )
    assert released.status_code == 200
    assert released.json() == {
        "account": "holder",
        "hold": hold["id"],
        "released": True,
        "units": {"sms_credits": 6},
    }
    again = await api.client.delete(
        f"/v1/accounts/holder/holds/{hold['id']}", headers=api.as_admin()
    )
    assert again.json()["released"] is False
    assert await redis.hget("mtr:{holder}:ht", "sms_credits:") is None
    admitted = await api.client.post(
        "/v1/accounts/holder/admission/sms",
        json={"messages": 2, "segments": 5},
        headers=api.as_admin(),
    )
    assert admitted.json()["admitted"] == 2


async def test_a_hold_expires_and_frees_its_units(redis_url: str, redis: aioredis.Redis) -> None:
    """The hold lasts `hold_ttl_s` of the API's clock; the next admission after it prunes it."""
    clock = [NOW]
    store = RedisStateStore.for_api(redis_url)
    try:
        ctx, _, admin, _ = await build_api(store, ApiConfig(rate_per_s=1e4, burst=10_000))
        ctx.config = ApiConfig(rate_per_s=1e4, burst=10_000, hold_ttl_s=60)
        ctx.clock_ms = lambda: clock[0]
        ctx.directory.put_plan(load_plan(PLAN))
        ctx.directory.put_account(account_from_json({"id": "holder", "plan": "holds-plan"}))
        await redis.set(EMAILS, 990)
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://api.test"
        ) as client:
            path = "/v1/accounts/holder/admission/messages"
            body = {"contacts": [f"c-{i}" for i in range(10)]}
            assert (await client.post(path, json=body, headers=headers)).json()["admitted"] == 10
            assert (await client.post(path, json=body, headers=headers)).json()["admitted"] == 0
            clock[0] += 59_999
            assert (await client.post(path, json=body, headers=headers)).json()["admitted"] == 0
            clock[0] += 1
            doc = (await client.post(path, json=body, headers=headers)).json()
            assert doc["admitted"] == 10  # the first hold expired: its 10 units are free
            usage = (await client.get("/v1/accounts/holder/usage", headers=headers)).json()
            emails = next(m for m in usage["meters"] if m["meter"] == "emails")
            assert (emails["used"], emails["held"]) == (990, 10)
    finally:
        await store.close()
