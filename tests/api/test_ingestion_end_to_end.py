"""`POST /v1/events` on the real Kafka and Redis of the test stack, next to a real processor:
events sent over HTTP, single and batched, end in the counters exactly once (a retried batch
with the same ids changes nothing), and refused events are not written at all."""

from __future__ import annotations

import uuid

import orjson
import pytest

from metering.api.auth import Scope
from metering.core.deltas import Aggregation
from metering.core.periods import PeriodKind, period_of
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.api.test_end_to_end import api_client, counted, processor
from tests.api.test_end_to_end import settings as settings  # noqa: PLC0414 - the fixture
from tests.api.test_end_to_end import store as store  # noqa: PLC0414 - the fixture
from tests.integration.harness import event, now_ms, read_topic

pytestmark = pytest.mark.integration

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


async def test_events_sent_over_http_are_counted_once(
    settings: Settings, store: RedisStateStore
) -> None:
    month = period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ACCOUNT, "acme")
        auth = {"Authorization": f"Bearer {token}"}
        one = event("acme", "email.sent", contact="c0", kind="marketing")
        single = await client.post(
            "/v1/events", content=orjson.dumps(one), headers={**auth, "Content-Type": SINGLE}
        )
        assert single.status_code == 202, single.text
        assert single.json() == {
            "accepted": 1,
            "refused": 0,
            "events": [{"index": 0, "id": one["id"], "status": "accepted"}],
        }
        batch = [event("acme", "email.sent", contact=f"c{i}", kind="marketing") for i in (1, 2)]
        bad = event("acme", "email.sent", contact="c3", kind="marketing")
        del bad["subject"]
        other = event("someone-else", "email.sent", contact="c4", kind="marketing")
        body = orjson.dumps([*batch, bad, other])
        headers = {**auth, "Content-Type": BATCH}
        sent = await client.post("/v1/events", content=body, headers=headers)
        assert sent.status_code == 202, sent.text
        doc = sent.json()
        assert (doc["accepted"], doc["refused"]) == (2, 2)
        assert [e["status"] for e in doc["events"]] == [
            "accepted",
            "accepted",
            "refused",
            "refused",
        ]
        assert (doc["events"][2]["reason"], doc["events"][2]["field"]) == (
            "missing_field",
            "subject",
        )
        assert doc["events"][3]["reason"] == "forbidden_subject"
        # The same batch again (a retry without Idempotency-Key): the ids count once.
        again = await client.post("/v1/events", content=body, headers=headers)
        assert again.json()["accepted"] == 2
        await counted(client, auth, "acme")
        amounts = await store.read_amounts("acme", [("emails", month, Aggregation.COUNT)])
        assert amounts[("emails", month)] == 3
        usage = await client.get("/v1/accounts/acme/usage", headers=auth)
        emails = next(m for m in usage.json()["meters"] if m["meter"] == "emails")
        assert emails["used"] == 3
    # Refused events never reached Kafka: 1 + 2 + 2 records, nothing else.
    records = await read_topic(settings, settings.events_topic, expect=5)
    assert {orjson.loads(r.value)["subject"] for r in records} == {"acme"}
    assert len(records) == 5


async def test_an_admin_key_sends_any_known_account_and_retries_replay_the_answer(
    settings: Settings, store: RedisStateStore
) -> None:
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ADMIN)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": BATCH,
            "Idempotency-Key": uuid.uuid4().hex,
        }
        docs = [
            event("acme", "email.sent", contact="x", kind="marketing"),
            event("nobody", "email.sent", contact="y", kind="marketing"),
        ]
        first = await client.post("/v1/events", content=orjson.dumps(docs), headers=headers)
        assert first.status_code == 202, first.text
        assert [e.get("reason") for e in first.json()["events"]] == [None, "unknown_account"]
        replay = await client.post("/v1/events", content=orjson.dumps(docs), headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
        await counted(client, headers, "acme")
    records = await read_topic(settings, settings.events_topic, expect=1)
    assert len(records) == 1  # the replay wrote nothing
