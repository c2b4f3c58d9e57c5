"""History of past periods, the members of a period (Act-On "past usage") and tiers."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.api.conftest import Api

pytestmark = pytest.mark.integration


async def test_history_reads_previous_periods_oldest_first(api: Api, redis: aioredis.Redis) -> None:
    await redis.set("mtr:{apsis}:c:email_sendings:2026-09", 70)
    await redis.set("mtr:{apsis}:c:email_sendings:2026-10", 120)
    await redis.set("mtr:{apsis}:c:email_sendings:2026-11", 10)
    response = await api.client.get(
        "/v1/accounts/apsis/meters/email_sendings/history?periods=4",
        headers=api.as_account("apsis"),
    )
    assert response.status_code == 200, response.text
    rows = response.json()["periods"]
    assert [(r["period"], r["used"], r["status"], r["closed"]) for r in rows] == [
        ("2026-08", 0, "green", True),
        ("2026-09", 70, "green", True),
        ("2026-10", 120, "red", True),
        ("2026-11", 10, "green", False),
    ]
    assert rows[2]["start"] == "2026-09-30T22:00:00Z"  # Stockholm summer time


async def test_history_of_a_gauge_is_refused_naming_the_meter(api: Api) -> None:
    response = await api.client.get(
        "/v1/accounts/apsis/meters/known_profiles/history", headers=api.as_admin()
    )
    assert (response.status_code, response.json()["field"]) == (409, "meter")


async def test_members_of_a_period_are_the_past_usage_report(
    api: Api, redis: aioredis.Redis
) -> None:
    await redis.sadd("mtr:{acton-big}:s:active_contacts:2026-10", "b", "a", "c")
    response = await api.client.get(
        "/v1/accounts/acton-big/meters/active_contacts/members?period=2026-10&limit=2",
        headers=api.as_admin(),
    )
    assert response.json() == {
        "account": "acton-big",
        "meter": "active_contacts",
        "period": "2026-10",
        "count": 3,
        "freshness": None,  # this app runs without Kafka (tests/api/conftest.py)
        "offset": 0,
        "members": ["a", "b"],
    }
    current = await api.client.get(
        "/v1/accounts/acton-big/meters/active_contacts/members", headers=api.as_admin()
    )
    assert (current.json()["period"], current.json()["count"]) == ("2026-11", 0)


async def test_tiers_are_placed_by_the_last_three_closed_months(
    api: Api, redis: aioredis.Redis
) -> None:
    # Clerk.io: "monthly avg. 20,000 searches -> the 'up to 25,000' tier".
    for month, used in (
        ("2026-08", 19_000),
        ("2026-09", 20_000),
        ("2026-10", 21_001),
        ("2026-11", 900_000),
    ):
        await redis.set(f"mtr:{{clerk}}:c:searches:{month}", used)
    response = await api.client.get("/v1/accounts/clerk/tiers", headers=api.as_account("clerk"))
    ladders = {entry["ladder"]: entry for entry in response.json()["ladders"]}
    assert ladders["search"]["bounds"] == [5000, 10000, 25000, 50000, 100000, 250000]
    search = ladders["search"]["placement"]
    assert search["up_to"] == 25_000
    assert search["average_exact"] == "60001/3"
    assert [m["period"] for m in search["months"]] == ["2026-08", "2026-09", "2026-10"]
    assert search["complete"] is True
    assert ladders["audience"]["source"] == "unavailable"  # a gauge: needs period rollups
