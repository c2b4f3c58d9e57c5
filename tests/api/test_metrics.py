"""The API's Prometheus metrics: requests through the app, then a scrape of /metrics, checked
series by series against docs/observability.md ("API metrics"): route templates (never raw
paths, which hold account ids), decisions counted per item, the in-flight gauge, one registry
per application."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.api.app import create_app
from metering.api.metrics import BUCKETS, ApiMetrics, MetricsMiddleware
from tests.api.conftest import Api

DURATION = "metering_api_request_duration_seconds"
DECISIONS = "metering_api_admission_decisions"
IN_FLIGHT = "metering_api_requests_in_flight"


def samples(text: str) -> Iterator[Sample]:
    for family in text_string_to_metric_families(text):
        yield from family.samples


def counts(text: str) -> dict[tuple[str, str, str], float]:
    """(route, method, status) -> requests observed, from a scrape."""
    return {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for s in samples(text)
        if s.name == f"{DURATION}_count"
    }


def decisions(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["action"], s.labels["allowed"], s.labels["reason"]): s.value
        for s in samples(text)
        if s.name == f"{DECISIONS}_total"
    }


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@pytest.mark.integration
async def test_requests_are_timed_by_route_template_and_decisions_counted_per_item(
    api: Api, redis: aioredis.Redis
) -> None:
    await redis.set("mtr:{apsis}:b:sms_credits", 5)
    await redis.sadd("mtr:{ac}:g:contacts", *[f"k{i}" for i in range(10)])  # 10 of 10
    calls = [
        ("GET", "/v1/accounts/apsis/usage", api.as_account("apsis"), None, 200),
        ("GET", "/v1/accounts/acton/usage", api.as_account("acton"), None, 200),
        ("GET", "/v1/accounts/acton/usage", api.as_account("apsis"), None, 403),
        ("GET", "/v1/accounts/acton/usage", {}, None, 401),
        ("GET", "/nowhere/acton", {}, None, 404),
        ("DELETE", "/v1/accounts/acton/usage", api.as_admin(), None, 405),
        # acton: limit 5, so 5 admitted, 1 refused, 1 repeated
        (
            "POST",
            "/v1/accounts/acton/admission/messages",
            api.as_account("acton"),
            {"contacts": ["a", "b", "c", "d", "e", "f", "a"]},
            200,
        ),
        (
            "POST",
            "/v1/accounts/acton/admission/messages",
            api.as_account("acton"),
            {"contacts": ["a"]},
            200,
        ),
        # 5 credits, 2 per SMS: 2 allowed, 1 refused
        (
            "POST",
            "/v1/accounts/apsis/admission/sms",
            api.as_account("apsis"),
            {"messages": 3, "segments": 2},
            200,
        ),
        (
            "POST",
            "/v1/accounts/ac/admission/contacts",
            api.as_account("ac"),
            {"contacts": ["k1", "new"], "origin": "import"},
            200,
        ),
        (
            "POST",
            "/v1/accounts/ac/admission/campaigns",
            api.as_account("ac"),
            {"action": "campaign.send", "recipients": 10},
            200,
        ),
        (
            "POST",
            "/v1/accounts/ac/admission/campaigns",
            api.as_account("ac"),
            {"action": "campaign.send", "recipients": 10, "contacts_via_api": True},
            200,
        ),
        ("POST", "/v1/accounts/ac/admission/campaigns", api.as_account("ac"), {"x": 1}, 422),
        (
            "POST",
            "/v1/accounts/ac/admission/automations",
            api.as_account("ac"),
            {"contacts": ["k1", "new"]},
            200,
        ),
    ]
    for method, path, headers, body, expected in calls:
        response = await api.client.request(method, path, headers=headers, json=body)
        assert response.status_code == expected, (method, path, response.text)

    text = await scrape(api.client)
    usage = "/v1/accounts/{account}/usage"
    admission = "/v1/accounts/{account}/admission/"
    assert counts(text) == {
        (usage, "GET", "200"): 2,
        (usage, "GET", "403"): 1,
        (usage, "GET", "401"): 1,
        (usage, "DELETE", "405"): 1,
        ("<unmatched>", "GET", "404"): 1,
        (admission + "messages", "POST", "200"): 2,
        (admission + "sms", "POST", "200"): 1,
        (admission + "contacts", "POST", "200"): 1,
        (admission + "campaigns", "POST", "200"): 2,
        (admission + "campaigns", "POST", "422"): 1,
        (admission + "automations", "POST", "200"): 1,
    }
    for account in ("acton", "apsis"):  # no account id in any label
        assert account not in text
    assert decisions(text) == {
        ("messages", "true", "within_limit"): 5,
        ("messages", "false", "new_member_over_limit"): 1,
        ("messages", "true", "already_counted"): 2,
        ("sms", "true", "credits_available"): 2,
        ("sms", "false", "insufficient_credits"): 1,
        ("contacts", "false", "batch_over_limit"): 2,  # an import at the limit: refused whole
        ("automations", "false", "ceiling_reached"): 2,
        ("campaigns", "false", "ceiling_reached"): 1,
        ("campaigns", "true", "within_limit"): 1,
    }
    # The scrape is being served while the registry is read.
    assert [s.value for s in samples(text) if s.name == IN_FLIGHT] == [1.0]

    # Buckets are the specified ones; the scrape itself shows up in the next scrape.
    again = await scrape(api.client)
    assert counts(again)[("/metrics", "GET", "200")] == 1
    bounds = [
        s.labels["le"]
        for s in samples(again)
        if s.name == f"{DURATION}_bucket" and s.labels["route"] == "/metrics"
    ]
    assert bounds == [*(repr(float(b)) for b in BUCKETS), "+Inf"]


@pytest.mark.integration
async def test_each_application_has_its_own_registry(api: Api) -> None:
    other = create_app(api.ctx)
    transport = httpx.ASGITransport(app=other)
    async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as client:
        response = await client.get("/v1/accounts/acton/usage", headers=api.as_account("acton"))
        assert response.status_code == 200
        assert counts(await scrape(client)) == {("/v1/accounts/{account}/usage", "GET", "200"): 1}
    assert counts(await scrape(api.client)) == {}
    assert REGISTRY.get_sample_value(f"{DURATION}_count") is None
    assert not [m for m in REGISTRY.collect() if m.name.startswith("metering_api")]


@pytest.mark.integration
async def test_a_body_refused_by_the_size_guard_is_timed_under_its_route(api: Api) -> None:
    response = await api.client.post(
        "/v1/accounts/acton/admission/messages",
        content=b"x" * (api.ctx.config.max_body_bytes + 1),
        headers={**api.as_account("acton"), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    # Refused on its Content-Length before routing: no route is known yet.
    assert counts(await scrape(api.client)) == {("<unmatched>", "POST", "413"): 1}


async def test_an_exception_counts_as_500_and_unusual_methods_as_other() -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def fine(request: Request) -> Response:
        return Response("ok")

    metrics = ApiMetrics.create()
    routes = [Route("/boom/{x}", boom), Route("/fine", fine, methods=["GET", "PURGE"])]
    app = Starlette(routes=routes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=routes)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
        assert (await client.get("/boom/1")).status_code == 500
        assert (await client.request("PURGE", "/fine")).status_code == 200

    def value(route: str, method: str, status: str) -> float | None:
        return metrics.registry.get_sample_value(
            f"{DURATION}_count", {"route": route, "method": method, "status": status}
        )

    assert value("/boom/{x}", "GET", "500") == 1
    assert value("/fine", "other", "200") == 1
    assert metrics.registry.get_sample_value(IN_FLIGHT) == 0
