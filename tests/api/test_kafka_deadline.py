"""With Kafka down, every API call that writes to it ends within its deadline with 503
`kafka_unavailable` and Retry-After (instead of a 500 after 40 s or a request hanging for a
minute); the API's own view does not show the change, and once Kafka is back the same requests
succeed and the topics hold each change once (a top-up's copies all carry one event id).

A private broker of our own is stopped and started again (tests/reliability/infra.py): never
the shared test stack. The deadline is one second here (a few by default).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from metering.api.app import create_app
from metering.api.auth import Scope
from metering.api.context import ApiConfig
from metering.core.errors import StreamUnavailable
from metering.runtime.api import running
from metering.settings import Settings
from streams.topics import ensure_topics
from tests.integration.harness import publish_config, read_topic
from tests.reliability.infra import PrivateKafka, kafka_jars

pytestmark = pytest.mark.integration

LIMIT = "/v1/accounts/acme/limits/emails"
TOP_UP = "/v1/accounts/acme/sms-credits"


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka_jars()
    broker = PrivateKafka(tmp_path / "stack")
    try:
        broker.up()
        yield broker
    finally:
        broker.close()


@pytest.fixture
async def settings(kafka: PrivateKafka, redis_url: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_url,
        events_topic=f"deadline-{run}.events",
        accounts_topic=f"deadline-{run}.accounts",
        metrics_port=0,
        api_kafka_write_timeout_ms=1000,
    )
    await ensure_topics(s)
    await publish_config(s, [{"id": "acme", "plan": "it-plan"}])
    return s


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with running(settings, ApiConfig(rate_per_s=1000, burst=1000)) as ctx:
        token, _ = await ctx.keys.create(Scope.ADMIN)
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http, {"Authorization": f"Bearer {token}"}


def assert_kafka_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    doc = response.json()
    assert doc["code"] == "kafka_unavailable"
    assert "within 1 s" in doc["detail"], doc["detail"]
    assert "retrying the same request" in doc["detail"]


async def until_accepted(
    http: httpx.AsyncClient, method: str, path: str, **options: object
) -> httpx.Response:
    """Repeat a request while it answers 503 (the producer reconnects to the restarted broker
    in the background); any other answer is returned."""
    for _ in range(120):
        response = await http.request(method, path, **options)  # type: ignore[arg-type]
        if response.status_code != 503:
            return response
        assert_kafka_unavailable(response)
    raise AssertionError(f"{method} {path} still answers 503: {response.text}")


async def test_writes_answer_503_within_the_deadline_while_kafka_is_down_and_land_once(
    kafka: PrivateKafka,
    settings: Settings,
    client: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, admin = client
    assert (await http.put(LIMIT, json={"limit": 10}, headers=admin)).status_code == 200

    await asyncio.to_thread(kafka.stop)
    assert_kafka_unavailable(await http.put(LIMIT, json={"limit": 20}, headers=admin))
    top_up = {"json": {"credits": 250}, "headers": {**admin, "Idempotency-Key": "k-1"}}
    assert_kafka_unavailable(await http.post(TOP_UP, **top_up))  # type: ignore[arg-type]
    account = {"plan": "it-plan", "limits": {"emails": 30}}
    assert_kafka_unavailable(await http.put("/v1/accounts/acme", json=account, headers=admin))
    assert_kafka_unavailable(await http.delete("/v1/accounts/acme", headers=admin))
    # Not acknowledged, so not shown: the API's view is still the last acknowledged change.
    shown = await http.get("/v1/accounts/acme", headers=admin)
    assert shown.status_code == 200
    assert shown.json()["limits"] == {"emails": 10}

    # In a thread, as an outage is: the API goes on running while the broker starts again
    # (its producer gives up the refused records meanwhile).
    await asyncio.to_thread(kafka.up)
    changed = await until_accepted(http, "PUT", LIMIT, json={"limit": 20}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"] == {"emails": 20}
    accepted = await until_accepted(http, "POST", TOP_UP, **top_up)
    assert accepted.status_code == 202, accepted.text
    event_id = accepted.json()["event_id"]

    # What was refused while the broker was down was given up, not delivered once it came
    # back: the events topic holds the retried top-up alone, the accounts topic the first
    # change and the retried one (no replaced account, no tombstone).
    records = await read_topic(settings, settings.events_topic, expect=1)
    assert [orjson.loads(r.value)["id"] for r in records] == [event_id]
    records = await read_topic(settings, settings.accounts_topic, expect=4)
    limits = [
        None if r.value is None else orjson.loads(r.value).get("limits", {})
        for r in records
        if r.key == b"account:acme"
    ]
    assert limits == [{}, {"emails": 10}, {"emails": 20}]


async def test_the_api_does_not_start_when_kafka_does_not_answer(redis_url: str) -> None:
    """The bootstrap address accepts connections and never answers (a hung broker): start-up
    fails at the deadline with our error naming the setting, instead of aiokafka's 40 s, and
    leaves no client open (an unclosed one is a ResourceWarning, an error in these tests)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        host, port = silent.getsockname()
        settings = Settings(
            kafka_bootstrap=f"{host}:{port}", redis_url=redis_url, api_kafka_write_timeout_ms=1000
        )
        with pytest.raises(StreamUnavailable, match="METERING_API_KAFKA_WRITE_TIMEOUT_MS"):
            async with running(settings, ApiConfig()):
                pass
