"""The API wired to the real Kafka and Redis of the test stack, next to a real processor:
configuration flows both ways through the accounts topic, a top-up flows through the events
topic exactly once, and reservations and the processor's counting agree."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from metering.api.app import create_app
from metering.api.auth import Scope
from metering.api.context import ApiConfig, ApiContext
from metering.core.deltas import Aggregation
from metering.core.periods import PeriodKind, period_of
from metering.core.thresholds import crossing_id
from metering.runtime.api import running
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    TopicFactory,
    encoded,
    event,
    make_settings,
    now_ms,
    produce,
    publish_config,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration


@asynccontextmanager
async def processor(settings: Settings) -> AsyncIterator[None]:
    """A running processor that has taken the store (written its marker: until then the API
    refuses reads of metered state with 503 store_not_initialised)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=CollectorRegistry()))
    try:
        store = RedisStateStore.from_url(settings.redis_url)
        try:
            await wait_until(lambda: _marked(store), what="the processor to write the store marker")
        finally:
            await store.close()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def _marked(store: RedisStateStore) -> bool:
    return await store.store_marker() is not None


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[tuple[ApiContext, httpx.AsyncClient]]:
    async with running(settings, ApiConfig(rate_per_s=1000, burst=1000)) as ctx:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield ctx, client


async def counted(
    client: httpx.AsyncClient, headers: dict[str, str], account: str | None = None
) -> None:
    """Wait through the API until everything produced so far is counted (GET /v1/wait)."""
    path = "/v1/wait" if account is None else f"/v1/accounts/{account}/wait"
    waited = await client.get(f"{path}?timeout_ms=60000", headers=headers)
    assert waited.status_code == 200, waited.text


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    await publish_config(s, [{"id": "acme", "plan": "it-plan"}])
    return s


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(settings.redis_url)
    yield s
    await s.close()


async def test_admin_changes_reach_the_running_processor_and_other_api_processes(
    settings: Settings, store: RedisStateStore
) -> None:
    month = period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ADMIN)
        admin = {"Authorization": f"Bearer {token}"}
        usage = await client.get("/v1/accounts/acme/usage", headers=admin)
        assert usage.status_code == 200, usage.text  # caught up with the topic at start
        changed = await client.put(
            "/v1/accounts/acme/limits/emails", json={"limit": 3}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        await asyncio.sleep(1.5)  # the processor's follower polls every 0.5 s
        docs = [event("acme", "email.sent", contact=f"c{i}", kind="marketing") for i in range(4)]
        await produce(settings, encoded(docs))
        await counted(client, admin)
        # A second API process, started now, reads the change from the topic.
        async with running(settings, ApiConfig()) as other:
            account = other.directory.account("acme")
            assert account is not None
            assert dict(account.limit_overrides) == {"emails": 3}
        usage = await client.get("/v1/accounts/acme/usage", headers=admin)
        emails = next(m for m in usage.json()["meters"] if m["meter"] == "emails")
        assert (emails["used"], emails["limit"]) == (4, 3)
        assert emails["thresholds_reached"] == ["at_risk", "exceeded"]  # it-plan: no red colour
        assert emails["last_update"] is not None
    records = await read_topic(settings, settings.thresholds_topic, expect=2)
    ids = {orjson.loads(r.value)["id"] for r in records}
    assert crossing_id("acme", "emails", month, "exceeded") in ids


async def test_sms_top_up_is_counted_once_however_often_it_is_retried(
    settings: Settings, store: RedisStateStore
) -> None:
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ADMIN)
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        for _ in range(3):
            response = await client.post(
                "/v1/accounts/acme/sms-credits", json={"credits": 250}, headers=headers
            )
            assert response.status_code == 202, response.text
        await counted(client, headers)
        amounts = await store.read_amounts("acme", [("sms_credits", "", Aggregation.BALANCE)])
        assert amounts[("sms_credits", "")] == 250
        other = await client.post(
            "/v1/accounts/acme/sms-credits",
            json={"credits": 5},
            headers={**headers, "Idempotency-Key": "another-order"},
        )
        assert other.status_code == 202
        await counted(client, headers)
        usage = await client.get("/v1/accounts/acme/usage", headers=headers)
        sms = next(m for m in usage.json()["meters"] if m["meter"] == "sms_credits")
        assert sms["used"] == 255


async def test_reserved_contacts_are_not_counted_twice_by_the_processor(
    settings: Settings, store: RedisStateStore
) -> None:
    month = period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ACCOUNT, "acme")
        headers = {"Authorization": f"Bearer {token}"}
        admitted = await client.post(
            "/v1/accounts/acme/admission/messages",
            json={"contacts": ["a", "b"]},
            headers=headers,
        )
        assert (admitted.json()["allowed"], admitted.json()["admitted"]) == (True, 2)
        docs = [event("acme", "email.sent", contact=c, kind="marketing") for c in "abc"]
        await produce(settings, encoded(docs))
        await counted(client, headers, "acme")
    assert await store.members("acme", "active_contacts", month) == {"a", "b", "c"}
