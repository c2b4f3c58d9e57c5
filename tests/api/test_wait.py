"""Fresh numbers on real Kafka and Redis: usage answers say how far the processor got in the
account's partition, and the wait routes return once everything produced before the call is
applied (504 with the lag left when the time is up first)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from metering.api.auth import Scope
from metering.core.rfc3339 import format_ms
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from streams.log_ranges import partition_for
from tests.api.test_end_to_end import api_client, processor
from tests.integration.harness import (
    TopicFactory,
    encoded,
    event,
    make_settings,
    now_ms,
    produce,
    publish_config,
    read_topic,
)

pytestmark = pytest.mark.integration

ACCOUNTS = [{"id": "acme", "plan": "it-plan"}, {"id": "beta", "plan": "it-plan"}]


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=4)
    await publish_config(s, ACCOUNTS)
    return s


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(settings.redis_url)
    yield s
    await s.close()


def emails(account: str, n: int, time_ms: int) -> list[tuple[bytes | None, bytes | None]]:
    docs = [
        event(account, "email.sent", contact=f"c{i}", kind="marketing", time_ms=time_ms)
        for i in range(n)
    ]
    return encoded(docs)


async def used_emails(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    usage = (await client.get("/v1/accounts/acme/usage", headers=headers)).json()
    meter = next(m for m in usage["meters"] if m["meter"] == "emails")
    return meter["used"], usage["freshness"]


async def test_wait_returns_once_what_was_produced_before_it_is_counted(
    settings: Settings, store: RedisStateStore
) -> None:
    stamp = now_ms() - 60_000
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ACCOUNT, "acme")
        headers = {"Authorization": f"Bearer {token}"}
        await produce(settings, emails("acme", 37, stamp) + emails("beta", 5, stamp + 1))
        waited = await client.get("/v1/accounts/acme/wait?timeout_ms=60000", headers=headers)
        assert waited.status_code == 200, waited.text
        body = waited.json()
        assert (body["caught_up"], body["account"], body["lag"]) == (True, "acme", 0)
        (part,) = body["partitions"]
        assert part["partition"] == partition_for("acme", 4)
        assert part["position"] == part["target"] - 1
        # No polling: the answer right after the wait holds every e-mail.
        used, freshness = await used_emails(client, headers)
        assert used == 37
        assert freshness["partition"] == part["partition"]
        assert (freshness["lag"], freshness["caught_up"], freshness["lag_unknown"]) == (
            0,
            True,
            None,
        )
        assert freshness["applied_at"] is not None
        if partition_for("beta", 4) != part["partition"]:
            assert freshness["watermark"] == format_ms(stamp)
    # Kafka put the account's records where the API said (its own producer's partitioner).
    records = await read_topic(settings, settings.events_topic, expect=42)
    assert {r.partition for r in records if r.key == b"acme"} == {part["partition"]}


async def test_without_a_processor_the_wait_times_out_with_the_lag_left(
    settings: Settings, store: RedisStateStore
) -> None:
    await store.claim_store_marker("no processor yet")  # reads are allowed; nothing counts
    await produce(settings, emails("acme", 6, now_ms()))
    async with api_client(settings) as (ctx, client):
        admin_token, _ = await ctx.keys.create(Scope.ADMIN)
        account_token, _ = await ctx.keys.create(Scope.ACCOUNT, "acme")
        admin = {"Authorization": f"Bearer {admin_token}"}
        account = {"Authorization": f"Bearer {account_token}"}
        late = await client.get("/v1/accounts/acme/wait?timeout_ms=300", headers=account)
        assert late.status_code == 504, late.text
        problem = late.json()
        assert problem["code"] == "not_caught_up"
        assert (problem["caught_up"], problem["lag"]) == (False, 6)
        assert "6 records" in problem["detail"]
        everything = await client.get("/v1/wait?timeout_ms=0", headers=admin)
        assert everything.status_code == 504
        assert everything.json()["lag"] == 6
        assert len(everything.json()["partitions"]) == 4
        assert (await client.get("/v1/wait", headers=account)).status_code == 403
        bad = await client.get("/v1/wait?timeout_ms=-1", headers=admin)
        assert (bad.status_code, bad.json()["field"]) == (422, "timeout_ms")
        used, freshness = await used_emails(client, account)
        assert used == 0
        assert (freshness["lag"], freshness["caught_up"], freshness["position"]) == (6, False, None)
        async with processor(settings):
            done = await client.get("/v1/wait?timeout_ms=60000", headers=admin)
            assert done.status_code == 200, done.text
            assert done.json()["lag"] == 0
            assert (await used_emails(client, account))[0] == 6
