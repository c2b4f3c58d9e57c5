"""What every answer carries and what every write accepts, on the app over real Redis:
X-Request-Id in and out (and in log lines), the RateLimit fields, Idempotency-Key, the /docs
page with its locally served Redoc bundle, and `POST /v1/events` refusals (rate, media type,
account keys); tests/api/test_ingestion_end_to_end.py sends events through real Kafka."""

from __future__ import annotations

import hashlib
import logging
import uuid

import httpx
import orjson
import pytest

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.api.request_id import RequestIdFilter
from metering.core.errors import KafkaWriteTimeout
from metering.core.rfc3339 import format_ms
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import NOW, Api, build_api

pytestmark = pytest.mark.integration

BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"


def _event(account: str, n: int = 0) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"e-{uuid.uuid4().hex}-{n}",
        "source": "tests",
        "type": "email.sent",
        "subject": account,
        "time": format_ms(NOW),
        "data": {"contact": f"c{n}", "kind": "marketing"},
    }


# -- X-Request-Id ------------------------------------------------------------------------------


async def test_a_request_id_is_echoed_or_made_on_every_answer(api: Api) -> None:
    given = await api.client.get("/v1/me", headers={**api.as_admin(), "X-Request-Id": "abc-1"})
    assert given.headers["x-request-id"] == "abc-1"
    made = await api.client.get("/v1/me", headers=api.as_admin())
    assert len(made.headers["x-request-id"]) == 32
    refused = await api.client.get("/v1/me", headers={"X-Request-Id": "bad id%s"})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] not in ("", "bad id%s")
    assert len(refused.headers["x-request-id"]) == 32


async def test_log_lines_of_a_request_carry_its_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """A 503 logs a warning; the filter the API process installs adds the request's id."""

    class KafkaDown:
        async def publish(self, account: str, value: bytes) -> None:
            raise KafkaWriteTimeout("Kafka did not acknowledge an event within 0.1 s")

    api.ctx.events = KafkaDown()
    handler_filter = RequestIdFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.WARNING, logger="metering.api.app"):
            answer = await api.client.post(
                "/v1/accounts/apsis/sms-credits",
                json={"credits": 5},
                headers={**api.as_admin(), "X-Request-Id": "trace-me-42", "Idempotency-Key": "t"},
            )
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert (answer.status_code, answer.headers["x-request-id"]) == (503, "trace-me-42")
    lines = [r for r in caplog.records if r.name == "metering.api.app"]
    assert lines, f"no log line for a {answer.status_code}"
    assert all(getattr(r, "request_id", None) == "trace-me-42" for r in lines)
    assert "request_id=trace-me-42" in lines[0].getMessage()


# -- RateLimit ---------------------------------------------------------------------------------


async def test_answers_say_where_the_keys_bucket_stands(store: RedisStateStore) -> None:
    ctx, _, admin, _ = await build_api(store, ApiConfig(rate_per_s=0.001, burst=3))
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        headers = {"Authorization": f"Bearer {admin}"}
        seen = [await client.get("/v1/me", headers=headers) for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in seen] == ["2", "1", "0", "0"]
    assert {r.headers["ratelimit-limit"] for r in seen} == {"3"}
    assert int(seen[2].headers["ratelimit-reset"]) > 0
    assert seen[0].headers["ratelimit-policy"] == "3;w=3000"
    assert "retry-after" in seen[3].headers


async def test_unauthenticated_answers_carry_no_ratelimit_fields(api: Api) -> None:
    answer = await api.client.get("/v1/me")
    assert answer.status_code == 401
    assert "ratelimit-limit" not in answer.headers


# -- Idempotency-Key ---------------------------------------------------------------------------


async def test_a_retried_write_gets_the_first_answer_and_changes_nothing_more(api: Api) -> None:
    headers = {**api.as_admin(), "Idempotency-Key": "order-7"}
    first = await api.client.put(
        "/v1/accounts/acton/limits/active_contacts", json={"limit": 9}, headers=headers
    )
    assert first.status_code == 200, first.text
    again = await api.client.put(
        "/v1/accounts/acton/limits/active_contacts", json={"limit": 9}, headers=headers
    )
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert "idempotent-replayed" not in first.headers
    assert len(api.recorder.accounts) == 1  # published once
    other = await api.client.put(
        "/v1/accounts/acton/limits/active_contacts", json={"limit": 10}, headers=headers
    )
    assert other.status_code == 422
    assert (other.json()["code"], other.json()["field"]) == (
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    assert len(api.recorder.accounts) == 1


async def test_keys_are_per_caller_and_failures_are_not_remembered(api: Api) -> None:
    body = {"contacts": ["a"], "origin": "api"}
    path = "/v1/accounts/ac/admission/contacts"
    mine = {**api.as_account("ac"), "Idempotency-Key": "k1"}
    theirs = {**api.as_admin(), "Idempotency-Key": "k1"}
    assert (await api.client.post(path, json=body, headers=mine)).status_code == 200
    # Another caller's k1 is another key: it runs (no replay).
    second = await api.client.post(path, json=body, headers=theirs)
    assert second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    # A 403 is not remembered: the same key works once the request is right.
    forbidden = {**api.as_account("acton"), "Idempotency-Key": "k2"}
    assert (await api.client.post(path, json=body, headers=forbidden)).status_code == 403
    ok = await api.client.post(
        "/v1/accounts/acton/admission/contacts", json=body, headers=forbidden
    )
    assert ok.status_code == 200, ok.text  # k2 was not kept: another request may use it


async def test_an_invalid_key_is_refused_naming_the_header(api: Api) -> None:
    answer = await api.client.put(
        "/v1/accounts/acton/limits/active_contacts",
        json={"limit": 9},
        headers={**api.as_admin(), "Idempotency-Key": "has space"},
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "Idempotency-Key"
    assert api.recorder.accounts == []


async def test_a_key_still_in_flight_is_refused_with_409(api: Api) -> None:
    who = hashlib.sha256(api.as_admin()["Authorization"].encode()).hexdigest()
    digest = hashlib.sha256(f"{who}\x1fbusy".encode()).hexdigest()
    await api.ctx.store.claim_idempotency(digest, b'{"pending":true}', 60_000)
    answer = await api.client.delete(
        "/v1/accounts/acton/limits/active_contacts",
        headers={**api.as_admin(), "Idempotency-Key": "busy"},
    )
    assert answer.status_code == 409
    assert answer.json()["code"] == "idempotency_in_progress"
    assert answer.headers["retry-after"] == "1"


# -- /docs -------------------------------------------------------------------------------------


async def test_the_docs_page_and_its_script_are_served_from_here(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/docs/redoc.standalone.js">' in page.text
    assert 'spec-url="/openapi.json"' in page.text
    assert "http" not in page.text.split("<body>")[1].replace('href="/openapi.json"', "")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = await api.client.get("/docs/redoc.standalone.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert len(script.content) > 500_000
    assert b"cdn.redoc.ly" not in script.content  # the one CDN URL is not served
    assert b"redoc" in script.content[:5000].lower() or b"Redoc" in script.content
    moved = await api.client.get("/redoc")
    assert (moved.status_code, moved.headers["location"]) == (308, "/docs")
    spec = (await api.client.get("/openapi.json")).json()
    assert "ingestion" in spec["paths"]["/v1/events"]["post"]["tags"]


# -- POST /v1/events refusals ------------------------------------------------------------------


async def test_events_need_a_cloudevents_media_type(api: Api) -> None:
    answer = await api.client.post(
        "/v1/events",
        content=orjson.dumps(_event("acton")),
        headers={**api.as_admin(), "Content-Type": "application/json"},
    )
    assert answer.status_code == 415
    assert "application/cloudevents+json" in answer.json()["detail"]


async def test_a_batch_must_be_a_nonempty_array(api: Api) -> None:
    headers = {**api.as_admin(), "Content-Type": BATCH}
    for body, status in ((b"{}", 422), (b"[]", 422), (b"[", 400)):
        answer = await api.client.post("/v1/events", content=body, headers=headers)
        assert answer.status_code == status, body


async def test_a_single_bad_event_is_refused_with_the_decoders_reason(api: Api) -> None:
    bad = _event("acton")
    bad["data"] = {"contact": "c", "kind": "weekly"}
    answer = await api.client.post(
        "/v1/events", content=orjson.dumps(bad), headers={**api.as_admin(), "Content-Type": SINGLE}
    )
    assert answer.status_code == 202
    (outcome,) = answer.json()["events"]
    assert (outcome["status"], outcome["reason"], outcome["field"]) == (
        "refused",
        "invalid_value",
        "data.kind",
    )
    assert api.recorder.events == []


async def test_the_event_bucket_refuses_a_batch_that_does_not_fit(store: RedisStateStore) -> None:
    config = ApiConfig(rate_per_s=1000, burst=1000, events_per_s=0.001, events_burst=5)
    ctx, recorder, admin, _ = await build_api(store, config)
    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Authorization": f"Bearer {admin}", "Content-Type": BATCH}
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        four = await client.post(
            "/v1/events",
            content=orjson.dumps([_event("acton", n) for n in range(4)]),
            headers=headers,
        )
        two = await client.post(
            "/v1/events",
            content=orjson.dumps([_event("acton", n) for n in range(2)]),
            headers=headers,
        )
        six = await client.post(
            "/v1/events",
            content=orjson.dumps([_event("acton", n) for n in range(6)]),
            headers=headers,
        )
    assert four.status_code == 202
    assert four.headers["ratelimit-remaining"] == "1"
    assert two.status_code == 429
    assert two.headers["ratelimit-limit"] == "5"
    assert six.status_code == 422  # more than a batch may ever hold
    assert len(recorder.events) == 4
