"""Authorization matrix: account keys read their own account only, admin keys change things,
missing or bad keys get 401; keys are stored hashed and never logged; rate limit and body
limit."""

from __future__ import annotations

import hashlib
import logging

import httpx
import pytest
import redis.asyncio as aioredis

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import Api, build_api

pytestmark = pytest.mark.integration

# (method, path, JSON body) for every authenticated operation, on account "acton".
ACCOUNT_READS = [
    ("GET", "/v1/accounts/acton", None),
    ("GET", "/v1/accounts/acton/usage", None),
    ("GET", "/v1/accounts/acton/meters/active_contacts/history", None),
    ("GET", "/v1/accounts/acton/meters/active_contacts/members", None),
    ("GET", "/v1/accounts/acton/tiers", None),
    ("POST", "/v1/accounts/acton/admission/messages", {"contacts": ["c"]}),
    ("POST", "/v1/accounts/acton/admission/contacts", {"contacts": ["c"], "origin": "api"}),
    ("POST", "/v1/accounts/acton/admission/campaigns", {"recipients": 1}),
    ("POST", "/v1/accounts/acton/admission/automations", {"contacts": ["c"]}),
    ("POST", "/v1/accounts/acton/admission/sms", {"messages": 1}),
]
ADMIN_ONLY = [
    ("GET", "/v1/plans", None),
    ("GET", "/v1/plans/acton-active-contacts", None),
    ("GET", "/v1/accounts", None),
    ("PUT", "/v1/accounts/acton", {"plan": "acton-active-contacts"}),
    ("PUT", "/v1/accounts/acton/plan", {"plan": "acton-active-contacts"}),
    ("PUT", "/v1/accounts/acton/contract", {"timezone": "Europe/Paris"}),
    ("PUT", "/v1/accounts/acton/limits/active_contacts", {"limit": 9}),
    ("DELETE", "/v1/accounts/acton/limits/active_contacts", None),
    ("PUT", "/v1/accounts/acton/extensions/active_contacts", {"extra": 3}),
    ("DELETE", "/v1/accounts/acton", None),
]
ALL = ACCOUNT_READS + ADMIN_ONLY


async def call(api: Api, method: str, path: str, body: object, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return await api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), ALL)
async def test_missing_malformed_and_unknown_keys_are_401(
    api: Api, method: str, path: str, body: object
) -> None:
    for headers in (
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer mk_not-a-real-key"},
        {"Authorization": "Bearer " + api.tokens["acton"][:-1]},
    ):
        response = await call(api, method, path, body, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body"), ALL)
async def test_another_accounts_key_is_403(api: Api, method: str, path: str, body: object) -> None:
    response = await call(api, method, path, body, api.as_account("apsis"))
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY)
async def test_the_accounts_own_key_cannot_administer(
    api: Api, method: str, path: str, body: object
) -> None:
    response = await call(api, method, path, body, api.as_account("acton"))
    assert response.status_code == 403, response.text
    assert "admin" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_READS)
async def test_the_accounts_own_key_reads_and_asks(
    api: Api, method: str, path: str, body: object
) -> None:
    response = await call(api, method, path, body, api.as_account("acton"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path", "body"), ALL)
async def test_an_admin_key_may_do_everything(
    api: Api, method: str, path: str, body: object
) -> None:
    response = await call(api, method, path, body, api.as_admin())
    assert response.status_code in (200, 201, 204), response.text


async def test_keys_are_stored_as_sha256_digests_only(api: Api, redis: aioredis.Redis) -> None:
    stored = await redis.hgetall("mtr:api-keys")
    token = api.tokens["acton"]
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    everything = b" ".join([*stored, *stored.values()])
    assert token.encode() not in everything
    assert api.admin_token.encode() not in everything


async def test_a_revoked_key_stops_working(api: Api) -> None:
    headers = api.as_account("acton")
    assert (await api.client.get("/v1/me", headers=headers)).status_code == 200
    assert await api.ctx.keys.revoke(account="acton") == 1
    assert (await api.client.get("/v1/me", headers=headers)).status_code == 401


async def test_deleting_an_account_revokes_its_keys(api: Api) -> None:
    response = await api.client.delete("/v1/accounts/acton", headers=api.as_admin())
    assert response.status_code == 204
    assert api.recorder.deleted == ["acton"]
    me = await api.client.get("/v1/me", headers=api.as_account("acton"))
    assert me.status_code == 401
    gone = await api.client.get("/v1/accounts/acton/usage", headers=api.as_admin())
    assert gone.status_code == 404


async def test_the_dashboard_cookie_reads_but_never_writes(api: Api) -> None:
    session = await api.client.post("/v1/session", json={"key": api.tokens["acton"]})
    assert session.status_code == 200
    cookie = session.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert (await api.client.get("/v1/accounts/acton/usage")).status_code == 200
    # The cookie never authorises a POST (no cross-site request can spend the account's limit).
    post = await api.client.post("/v1/accounts/acton/admission/messages", json={"contacts": ["x"]})
    assert post.status_code == 401
    assert (await api.client.get("/v1/accounts/apsis/usage")).status_code == 403
    await api.client.delete("/v1/session")
    assert (await api.client.get("/v1/accounts/acton/usage")).status_code == 401


async def test_a_bad_session_key_is_401_naming_the_field(api: Api) -> None:
    response = await api.client.post("/v1/session", json={"key": "mk_wrong"})
    assert response.status_code == 401
    assert response.json()["field"] == "key"


async def test_rate_limit_per_key_is_429_with_retry_after(store: RedisStateStore) -> None:
    ctx, _, admin, tokens = await build_api(store, ApiConfig(rate_per_s=1, burst=3))
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        statuses = [
            (await client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['acton']}"}))
            for _ in range(5)
        ]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
        assert int(statuses[-1].headers["retry-after"]) >= 1
        # Another key has its own bucket.
        other = await client.get("/v1/me", headers={"Authorization": f"Bearer {admin}"})
        assert other.status_code == 200


async def test_bodies_over_64_kib_are_413(api: Api) -> None:
    contacts = [f"contact-{i:08d}" for i in range(5000)]  # ~90 KiB of JSON
    response = await api.client.post(
        "/v1/accounts/acton/admission/messages",
        json={"contacts": contacts},
        headers=api.as_account("acton"),
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b" " * 8192

    streamed = await api.client.post(
        "/v1/accounts/acton/admission/messages",
        content=chunks(),
        headers={**api.as_account("acton"), "content-type": "application/json"},
    )
    assert streamed.status_code == 413


async def test_no_key_appears_in_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.client.get("/v1/accounts/acton/usage", headers=api.as_account("acton"))
    await api.client.get("/v1/accounts/acton/usage", headers={"Authorization": "Bearer mk_x"})
    await api.client.post("/v1/session", json={"key": api.tokens["acton"]})
    await api.client.post("/v1/session", json={"key": "mk_guess"})
    await api.client.post(
        "/v1/accounts/acton/admission/messages",
        json={"contacts": []},
        headers=api.as_account("acton"),
    )
    text = caplog.text
    for secret in (*api.tokens.values(), api.admin_token, "mk_guess"):
        assert secret not in text
