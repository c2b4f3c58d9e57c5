"""Usage of an account: used, limit (with extension), remaining, ratio, colour, period,
last update and projection, read from the Redis state the processor writes."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from metering.core.rfc3339 import format_ms, parse_ms
from tests.api.conftest import NOW, Api

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def by_meter(doc: dict) -> dict[str, dict]:
    return {m["meter"]: m for m in doc["meters"]}


async def test_usage_shows_every_meter_of_the_plan_with_status_period_and_projection(
    api: Api, redis: aioredis.Redis
) -> None:
    updated = NOW - 5 * 60_000
    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 85)
    await redis.hset("mtr:{apsis}:u", "email_sendings:2026-11", updated)
    await redis.sadd("mtr:{apsis}:g:known_profiles", "p1", "p2", "p3")
    await redis.set("mtr:{apsis}:b:sms_credits", 40)

    response = await api.client.get("/v1/accounts/apsis/usage", headers=api.as_account("apsis"))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["account"] == "apsis"
    assert doc["plan"] == {"id": "apsis-essential", "name": "APSIS Essential"}
    assert doc["timezone"] == "Europe/Stockholm"
    meters = by_meter(doc)
    assert list(meters) == ["email_sendings", "known_profiles", "sms_credits"]

    email = meters["email_sendings"]
    assert (email["used"], email["limit"], email["remaining"]) == (85, 100, 15)
    assert email["ratio"] == pytest.approx(0.85)
    assert email["status"] == "yellow"
    assert email["thresholds_reached"] == ["at_risk"]
    # The calendar month in Stockholm: 1 Nov 00:00 CET = 31 Oct 23:00 UTC.
    assert email["period"] == {
        "key": "2026-11",
        "kind": "calendar_month",
        "start": "2026-10-31T23:00:00Z",
        "end": "2026-11-30T23:00:00Z",
    }
    assert email["last_update"] == format_ms(updated)
    # Pace: 85 in 349 h of a 720 h month.
    start = parse_ms("2026-10-31T23:00:00Z")
    elapsed, length = NOW - start, 720 * HOUR
    assert elapsed == 349 * HOUR
    assert email["projection"]["used_at_period_end"] == 85 * length // elapsed == 175
    reached = start + -(-100 * elapsed // 85)
    assert email["projection"]["limit_reached_at"] == format_ms(reached)

    profiles = meters["known_profiles"]
    assert (profiles["used"], profiles["limit"], profiles["status"]) == (3, 10000, "green")
    assert profiles["period"] is None
    assert profiles["projection"] is None
    assert profiles["last_update"] is None

    sms = meters["sms_credits"]
    assert (sms["used"], sms["limit"], sms["remaining"], sms["status"]) == (40, None, 40, "green")


async def test_colours_follow_the_thresholds_exactly(api: Api, redis: aioredis.Redis) -> None:
    async def colour(used: int) -> str:
        await redis.set("mtr:{apsis}:c:email_sendings:2026-11", used)
        response = await api.client.get("/v1/accounts/apsis/usage", headers=api.as_admin())
        return by_meter(response.json())["email_sendings"]["status"]

    assert await colour(79) == "green"
    assert await colour(80) == "yellow"  # 80% exactly is "at risk"
    assert await colour(100) == "yellow"  # at the limit is not yet over it
    assert await colour(101) == "red"


async def test_a_temporary_extension_raises_this_periods_limit(
    api: Api, redis: aioredis.Redis
) -> None:
    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 101)
    response = await api.client.put(
        "/v1/accounts/apsis/extensions/email_sendings", json={"extra": 50}, headers=api.as_admin()
    )
    assert response.status_code == 200, response.text
    assert response.json()["period"] == "2026-11"
    usage = await api.client.get("/v1/accounts/apsis/usage", headers=api.as_admin())
    email = by_meter(usage.json())["email_sendings"]
    assert (email["limit"], email["base_limit"], email["extension"]) == (150, 100, 50)
    assert (email["remaining"], email["status"]) == (49, "green")


async def test_billing_year_since_the_contract_date_and_derived_limits(api: Api) -> None:
    response = await api.client.get("/v1/accounts/actito/usage", headers=api.as_account("actito"))
    meters = by_meter(response.json())
    interactions = meters["interactions"]
    # "Consumption since" the contract date, 1 March, in Brussels.
    assert interactions["period"]["key"] == "y2026-03-01"
    assert interactions["period"]["start"] == "2026-02-28T23:00:00Z"
    assert interactions["limit"] == 12 * 100_000  # profiles x 12
    assert meters["sms_credits"]["status"] == "red"  # no credits left


async def test_unknown_account_is_404_for_admins(api: Api) -> None:
    response = await api.client.get("/v1/accounts/nobody/usage", headers=api.as_admin())
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == "account"
