"""The HTTP client's event ingestion against a real API process."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from metering.client import ApiError, UsageProducer
from metering.client.http import AsyncMeteringApi, MeteringApi
from tests.api.conftest import NOW
from tests.api.server import ServerThread

pytestmark = pytest.mark.integration


@pytest.fixture
def server(redis_url: str) -> Iterator[ServerThread]:
    running = ServerThread(redis_url).start()
    yield running
    running.stop()


def test_a_batch_is_answered_per_event_and_the_accepted_ones_are_produced(
    server: ServerThread,
) -> None:
    build = UsageProducer.connect("127.0.0.1:1", source="http-sdk").build  # no connection
    good = [build("email.sent", "acton", contact=f"c{i}", time_ms=NOW) for i in range(3)]
    other = build("email.sent", "apsis", contact="c1", time_ms=NOW)  # not with this key
    bad = {"specversion": "1.0", "id": "e-x", "source": "crm", "type": "email.sent"}
    with MeteringApi(server.url, key=server.tokens["acton"]) as api:
        answer = api.send_events([*good, other, bad])
        one = api.send_event(build("search.viewed", "acton", time_ms=NOW))
        with pytest.raises(ApiError) as caught:
            api.send_events([])
    assert (answer["accepted"], answer["refused"]) == (3, 2)
    statuses = [(e["index"], e["status"], e.get("reason")) for e in answer["events"]]
    assert statuses == [
        (0, "accepted", None),
        (1, "accepted", None),
        (2, "accepted", None),
        (3, "refused", "forbidden_subject"),
        (4, "refused", "missing_field"),
    ]
    assert [e["id"] for e in answer["events"][:3]] == [e.id for e in good]
    assert (one["accepted"], one["refused"]) == (1, 0)
    assert caught.value.status == 422
    produced = [orjson.loads(value)["id"] for _, value in server.ctx.events.events]  # type: ignore[attr-defined]
    assert produced == [*(e.id for e in good), one["events"][0]["id"]]


async def test_the_async_client_sends_with_an_idempotency_key(server: ServerThread) -> None:
    build = UsageProducer.connect("127.0.0.1:1", source="http-sdk").build
    events = [build("sms.sent", "apsis", contact="c1", quantity=2, time_ms=NOW)]
    async with AsyncMeteringApi(server.url, key=server.admin) as api:
        first = await api.send_events(events, idempotency_key="batch-1")
        again = await api.send_events(events, idempotency_key="batch-1")
    assert first == again
    assert first["accepted"] == 1
    assert len(server.ctx.events.events) == 1  # type: ignore[attr-defined]  # the retry wrote nothing
