"""An account's top-ups (written by the API) and its usage events (written by the SDK, or by
kcat set as the docs say) land on one partition: murmur2 of the account, Kafka's own rule.

Why: the processor keeps order per partition; a top-up on another partition than the sends
it pays for would be applied in an arbitrary order with them. kcat's default partitioner
(CRC32) places some of the same accounts elsewhere, which is why README and
docs/asyncapi.yaml tell producers to set `-X partitioner=murmur2_random`."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

import httpx
import orjson
import pytest

from metering.api.app import create_app
from metering.api.auth import Scope
from metering.api.context import ApiConfig
from metering.client import UsageProducer
from metering.core.partitioning import account_partition
from metering.runtime.api import running
from metering.settings import Settings
from tests.integration.harness import (
    TopicFactory,
    encoded,
    event,
    make_settings,
    publish_config,
    read_topic,
)

pytestmark = pytest.mark.integration

PARTITIONS = 8
ACCOUNTS = [f"shop-{i}" for i in range(12)]


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=PARTITIONS)
    await publish_config(s, [{"id": a, "plan": "it-plan"} for a in ACCOUNTS])
    return s


def kcat(settings: Settings, lines: list[bytes], *options: str) -> None:
    """Produce `key<TAB>value` lines with kcat and the given extra options."""
    path = shutil.which("kcat")
    assert path, "kcat is missing: deploy/test installs it (deploy/lib.sh ensure_kcat)"
    subprocess.run(
        [path, "-P", "-b", settings.kafka_bootstrap, "-t", settings.events_topic, "-K", "\t",
         *options],
        input=b"\n".join(lines) + b"\n",
        check=True,
        timeout=60,
    )  # fmt: skip


async def test_top_ups_and_usage_events_of_an_account_share_its_partition(
    settings: Settings,
) -> None:
    async with running(settings, ApiConfig(rate_per_s=1000, burst=1000)) as ctx:
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            token, _ = await ctx.keys.create(Scope.ADMIN)
            for account in ACCOUNTS:
                topped = await client.post(
                    f"/v1/accounts/{account}/sms-credits",
                    json={"credits": 10},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": account},
                )
                assert topped.status_code == 202, topped.text
    async with UsageProducer.connect(
        settings.kafka_bootstrap, source="sdk", topic=settings.events_topic
    ) as usage:
        receipts = {a: await usage.sms_sent(a, contact="c1") for a in ACCOUNTS}
    murmur = [{**event(a, "sms.sent", contact="c2"), "source": "kcat-murmur2"} for a in ACCOUNTS]
    murmur_lines = [k + b"\t" + v for k, v in encoded(murmur)]  # type: ignore[operator]
    kcat(settings, murmur_lines, "-X", "partitioner=murmur2_random")
    default = [{**event(a, "sms.sent", contact="c3"), "source": "kcat-default"} for a in ACCOUNTS]
    kcat(settings, [k + b"\t" + v for k, v in encoded(default)])  # type: ignore[operator]

    records = await read_topic(settings, settings.events_topic, expect=4 * len(ACCOUNTS))
    assert len(records) == 4 * len(ACCOUNTS)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for record in records:
        doc = orjson.loads(record.value)
        assert record.key == doc["subject"].encode()
        where[(doc["subject"], doc["source"])].add(record.partition)
    for account in ACCOUNTS:
        expected = {account_partition(account, PARTITIONS)}
        assert where[(account, "metering-api")] == expected, account
        assert where[(account, "sdk")] == expected == {receipts[account].partition}, account
        assert where[(account, "kcat-murmur2")] == expected, account
    misplaced = [
        a for a in ACCOUNTS if where[(a, "kcat-default")] != {account_partition(a, PARTITIONS)}
    ]
    assert misplaced, "kcat's default placed every account like Kafka: re-check the docs"
