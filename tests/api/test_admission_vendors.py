"""ActiveCampaign's contact limit end to end, with the vendor's own rules and numbers: the API
and a real processor on the test stack's Kafka and Redis.

Seed 002: "you cannot add new contacts via CSV import if that would exceed the limit" (an
import is refused whole), API adds and forms go on past the limit, the admin's "add contact"
stops at it, and campaigns and automations stop at the limit, at 110 % when the contacts came
in through the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from metering.api.app import create_app
from metering.api.auth import Scope
from metering.api.context import ApiConfig
from metering.core import plans_examples
from metering.core.account_codec import account_from_json
from metering.runtime.api import running
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from tests.integration.harness import (
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    produce,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

PLAN = Path(plans_examples.__file__).parent / "activecampaign.toml"
ACCOUNT = "ac-100"
HOLDS = "mtr:{ac-100}:h:contacts"


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, s.accounts_topic)
        await writer.put_plan("activecampaign-lite", PLAN.read_text(), PLAN.name)
        doc = {"id": ACCOUNT, "plan": "activecampaign-lite", "limits": {"contacts": 100}}
        await writer.put_account(account_from_json(doc))
    finally:
        await producer.stop()
    return s


@asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, RedisStateStore]]:
    """A running processor (publisher included) and the API, with an account key."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=CollectorRegistry()))
    store = RedisStateStore.from_url(settings.redis_url)
    try:
        await wait_until(lambda: _marked(store), what="the processor to write the store marker")
        async with running(settings, ApiConfig(rate_per_s=1000, burst=1000)) as ctx:
            token, _ = await ctx.keys.create(Scope.ACCOUNT, ACCOUNT)
            transport = httpx.ASGITransport(app=create_app(ctx))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://api",
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                yield client, store
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await store.close()


async def _marked(store: RedisStateStore) -> bool:
    return await store.store_marker() is not None


async def ask(client: httpx.AsyncClient, what: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/accounts/{ACCOUNT}/admission/{what}", json=body)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


async def contacts_meter(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(f"/v1/accounts/{ACCOUNT}/usage")
    assert response.status_code == 200, response.text
    meter: dict[str, Any] = response.json()["meters"][0]
    return meter


async def add_contacts(
    settings: Settings, store: RedisStateStore, names: list[str], origin: str
) -> None:
    docs = [event(ACCOUNT, "contact.added", contact=c, origin=origin) for c in names]
    await produce(settings, encoded(docs))
    await wait_until(lambda: caught_up(settings, store), what="the contacts to be applied")


async def test_an_import_is_admitted_all_or_nothing_and_holds_its_places(
    settings: Settings, redis: aioredis.Redis
) -> None:
    async with stack(settings) as (client, store):
        # 101 contacts into an empty account with a limit of 100: refused whole.
        batch = [f"i{n:03d}" for n in range(101)]
        refused = await ask(client, "contacts", contacts=batch, origin="import")
        assert (refused["allowed"], refused["admitted"], refused["refused"]) == (False, 0, 101)
        assert (refused["reason"], refused["meter"], refused["fits"]) == (
            "batch_over_limit",
            "contacts",
            100,
        )
        assert {i["reason"] for i in refused["items"]} == {"batch_over_limit"}
        assert refused["meters"][0] | {"period": None} == {
            "meter": "contacts",
            "period": None,
            "used": 0,
            "held": 0,
            "limit": 100,
            "fits": 100,
            "enforcement": "limit",
        }
        assert await redis.zcard(HOLDS) == 0  # nothing held for a refused import

        # The 100 that fit: admitted together, their places held until they are counted.
        admitted = await ask(client, "contacts", contacts=batch[:100], origin="import")
        assert (admitted["allowed"], admitted["admitted"], admitted["fits"]) == (True, 100, 0)
        assert {i["reason"] for i in admitted["items"]} == {"within_limit"}
        assert admitted["meters"][0]["held"] == 100
        assert await redis.zcard(HOLDS) == 100

        # While held, nothing else fits: another import, or the admin's "add contact".
        one_more = await ask(client, "contacts", contacts=["late"], origin="import")
        assert (one_more["allowed"], one_more["reason"], one_more["fits"]) == (
            False,
            "batch_over_limit",
            0,
        )
        manual = await ask(client, "contacts", contacts=["m1"], origin="manual")
        assert (manual["allowed"], manual["reason"]) == (False, "limit_reached")
        # Asking again for the same import counts its contacts once (held by itself).
        again = await ask(client, "contacts", contacts=batch[:100], origin="import")
        assert (again["allowed"], again["fits"]) == (True, 0)

        # The import runs: the processor counts the 100; the holds are released as counted.
        await add_contacts(settings, store, batch[:100], "import")
        meter = await contacts_meter(client)
        assert (meter["used"], meter["status"], meter["state"]) == (100, "red", "at_limit")
        at_limit = await ask(client, "contacts", contacts=["late"], origin="import")
        assert at_limit["meters"][0] | {"period": None} == {
            "meter": "contacts",
            "period": None,
            "used": 100,
            "held": 0,
            "limit": 100,
            "fits": 0,
            "enforcement": "limit",
        }
        assert await redis.zcard(HOLDS) == 0

        # API adds and forms go on past the limit.
        for origin in ("api", "form"):
            doc = await ask(client, "contacts", contacts=["x1", "x2"], origin=origin)
            assert (doc["allowed"], doc["reason"]) == (True, "origin_always_allowed"), origin


async def test_two_imports_at_once_never_overshoot_together(settings: Settings) -> None:
    async with stack(settings) as (client, _):
        first = [f"a{n}" for n in range(60)]
        second = [f"b{n}" for n in range(60)]
        answers = await asyncio.gather(
            ask(client, "contacts", contacts=first, origin="import"),
            ask(client, "contacts", contacts=second, origin="import"),
        )
        assert sorted(a["allowed"] for a in answers) == [False, True]
        loser = next(a for a in answers if not a["allowed"])
        assert (loser["admitted"], loser["fits"]) == (0, 40)


async def test_campaigns_and_automations_stop_at_the_limit_and_at_110_percent_via_api(
    settings: Settings,
) -> None:
    async with stack(settings) as (client, store):
        await add_contacts(settings, store, [f"c{n}" for n in range(99)], "api")
        people = ["p1", "p2"]
        doc = await ask(client, "automations", contacts=people)
        assert (doc["allowed"], doc["admitted"], doc["reason"]) == (True, 2, "within_limit")

        await add_contacts(settings, store, ["c99"], "api")  # 100 of 100: reached
        doc = await ask(client, "automations", contacts=people)
        assert (doc["allowed"], doc["refused"], doc["reason"], doc["meter"]) == (
            False,
            2,
            "ceiling_reached",
            "contacts",
        )
        campaign = await ask(client, "campaigns", action="campaign.send", recipients=100)
        assert (campaign["allowed"], campaign["reason"]) == (False, "ceiling_reached")
        # Contacts that came in through the API: 10 % more first.
        doc = await ask(client, "automations", contacts=people, contacts_via_api=True)
        assert (doc["allowed"], doc["reason"]) == (True, "within_limit")

        await add_contacts(settings, store, [f"d{n}" for n in range(9)], "api")  # 109
        doc = await ask(client, "automations", contacts=people, contacts_via_api=True)
        assert doc["allowed"] is True
        await add_contacts(settings, store, ["d9"], "api")  # 110 of 100: 110 % reached
        doc = await ask(client, "automations", contacts=people, contacts_via_api=True)
        assert (doc["allowed"], doc["reason"]) == (False, "ceiling_reached")
        campaign = await ask(
            client, "campaigns", action="campaign.send", recipients=110, contacts_via_api=True
        )
        assert (campaign["allowed"], campaign["reason"]) == (False, "ceiling_reached")
        meter = await contacts_meter(client)
        assert (meter["used"], meter["state"]) == (110, "over")

        # automation.trigger is asked per contact, at its own endpoint.
        response = await client.post(
            f"/v1/accounts/{ACCOUNT}/admission/campaigns", json={"action": "automation.trigger"}
        )
        assert response.status_code == 422
        assert "admission/automations" in response.json()["detail"]

    # The crossings reached the thresholds topic once each.
    records = await read_topic(settings, settings.thresholds_topic, expect=3)
    names = sorted(orjson.loads(r.value)["threshold"] for r in records)
    assert names == ["api_overage", "approaching", "reached"]
