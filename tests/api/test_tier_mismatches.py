"""Clerk.io's wrong-tier report end to end: searches go through Kafka into a real processor,
its closer freezes three closed months and places the account, and the account paying for
another tier appears in `GET /v1/admin/tier-mismatches` and in `metering tiers mismatches`
(the `metering api` command serving it on a socket) with the months behind it.

Clerk.io: "We will always check if your over-usage is permanent by looking at the average
usage over 3 months. If you are on the wrong tier, your Customer Success Manager (CSM) will
reach out to you and discuss your plan."
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from metering.api.auth import Scope
from metering.core.account_codec import account_from_json
from metering.core.periods import PeriodKind, period_of, previous_period
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from tests.api.test_end_to_end import api_client, processor
from tests.integration.harness import (
    REPO,
    TopicFactory,
    encoded,
    env_of,
    event,
    make_settings,
    now_ms,
    produce,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration

CLERK = REPO / "metering" / "core" / "plans_examples" / "clerk.toml"
TZ = "Europe/Copenhagen"
DAY_MS = 86_400_000
SEARCHES = (4, 7, 5)
"""Searches in each of the last three closed months: an average of 16/3, "up to 5,000"."""


async def publish_clerk(settings: Settings, accounts: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        await writer.put_plan("clerk", CLERK.read_text(), Path(CLERK).name)
        for doc in accounts:
            await writer.put_account(account_from_json(doc))
    finally:
        await producer.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_an_account_paying_for_another_tier_is_reported_with_its_three_months(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    settings = replace(
        base,
        grace_s=1,
        statements_topic=await topic_factory(1),
        tiers_topic=await topic_factory(1),
        api_port=free_port(),
    )
    await publish_clerk(
        settings,
        [
            {"id": "shop", "plan": "clerk", "paid_tiers": {"search": 10_000}},
            {"id": "right", "plan": "clerk", "paid_tiers": {"search": 5_000}},
        ],
    )
    now = now_ms()
    current = period_of(PeriodKind.CALENDAR_MONTH, now, TZ)
    months = [previous_period(PeriodKind.CALENDAR_MONTH, current, TZ)]
    for _ in range(2):
        months.insert(0, previous_period(PeriodKind.CALENDAR_MONTH, months[0], TZ))
    docs = []
    for month, n in zip(months, SEARCHES, strict=True):
        for account in ("shop", "right"):
            docs += [
                event(account, "search.viewed", time_ms=month.start_ms + DAY_MS + i, surface="page")
                for i in range(n)
            ]
    # One search now moves the partition's watermark past the months' ends: they close.
    docs += [event(a, "search.viewed", time_ms=now, surface="instant") for a in ("shop", "right")]

    store = RedisStateStore.from_url(settings.redis_url)
    async with processor(settings), api_client(settings) as (ctx, client):
        token, _ = await ctx.keys.create(Scope.ADMIN)
        admin = {"Authorization": f"Bearer {token}"}
        await produce(settings, encoded(docs))

        async def reported() -> bool:
            answer = await client.get("/v1/admin/tier-mismatches", headers=admin)
            assert answer.status_code == 200, answer.text
            return bool(answer.json()["mismatches"])

        await wait_until(reported, what="the closer to place the account")
        report = (await client.get("/v1/admin/tier-mismatches", headers=admin)).json()
        expected_months = [
            {"period": m.key, "total": n} for m, n in zip(months, SEARCHES, strict=True)
        ]
        assert report == {
            "checked": 2,
            "mismatches": [
                {
                    "account": "shop",
                    "ladder": "search",
                    "meter": "searches",
                    "paid_up_to": 10_000,
                    "placed_up_to": 5_000,
                    "direction": "down",
                    "average": "16/3",
                    "average_display": "5.33",
                    "as_of": months[-1].key,
                    "months": expected_months,
                }
            ],
        }
        account_key, _ = await ctx.keys.create(Scope.ACCOUNT, "shop")
        refused = await client.get(
            "/v1/admin/tier-mismatches", headers={"Authorization": f"Bearer {account_key}"}
        )
        assert refused.status_code == 403

        # The same report from the terminal, through a real `metering api` process.
        env = env_of(settings)
        log = (tmp_path / "api.log").open("wb")
        api = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "metering.cli",
            "api",
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{settings.api_port}"

            async def serving() -> bool:
                try:
                    async with httpx.AsyncClient() as http:
                        answer = await http.get(f"{url}/v1/admin/tier-mismatches", headers=admin)
                except httpx.TransportError:
                    return False
                return answer.status_code == 200

            await wait_until(serving, what="metering api to serve")
            cli = [sys.executable, "-m", "metering.cli", "tiers", "mismatches"]
            options = ["--api-url", url, "--key", token]
            table = await asyncio.to_thread(
                subprocess.run,
                [*cli, *options],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert table.returncode == 0, table.stderr
            [header, row, total] = table.stdout.splitlines()
            assert header.split()[:3] == ["account", "ladder", "pays"]
            assert row.split()[:6] == ["shop", "search", "10,000", "5,000", "down", "5.33"]
            for month, n in zip(months, SEARCHES, strict=True):
                assert f"{month.key}: {n}" in row
            assert total == "1 on the wrong tier of 2 accounts with paid tiers"
            as_json = await asyncio.to_thread(
                subprocess.run,
                [*cli, "--json", *options],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert as_json.returncode == 0, as_json.stderr
            assert orjson.loads(as_json.stdout) == report
        finally:
            api.terminate()
            await asyncio.wait_for(api.wait(), 30)
            log.close()
    await store.close()
    # The tier events billing receives say the same: "up to 5,000" as of the third month.
    tiers = [
        orjson.loads(r.value) for r in await read_topic(settings, settings.tiers_topic, expect=4)
    ]
    shop = [t for t in tiers if t["account"] == "shop"]
    assert (shop[-1]["as_of"], shop[-1]["up_to"], shop[-1]["complete"]) == (
        months[-1].key,
        5_000,
        True,
    )
