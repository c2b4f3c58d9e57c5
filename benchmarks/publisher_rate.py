"""Outbox publishing rate: entries per second from Redis outboxes to the thresholds topic.

    python -m benchmarks.publisher_rate --bootstrap HOST:PORT --redis-url URL
        [--accounts 200] [--entries 50] [--rounds 3]

Fills `--accounts` outboxes with `--entries` crossing entries each (as lua/apply.lua writes
them), then times one `OutboxPublisher.sweep()` until every outbox is drained: Kafka
transactions, progress records, commits and Redis deletions included (ADR 0008). Each round
uses fresh topics (thresholds, progress) and a fresh transactional id, created on the given
broker and deleted at the end; the Redis database must be one the benchmark may write to
(only `mtr:{bench-*}` keys and the outbox index, removed at the end).

Publishing is off the processor's hot path (its own task), so this measures how fast decided
crossings reach billing after a backlog, not the processor's throughput. Not a test: it prints
figures; nothing fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import replace

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from metering.settings import Settings
from metering.state import keys
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher


async def _fill(store: RedisStateStore, accounts: list[str], entries: int) -> None:
    client = store._client  # a benchmark writes outboxes as the apply step does
    for account in accounts:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(entries):
                pipe.xadd(
                    keys.outbox_key(account),
                    {
                        "id": f"{account}:emails:2026-07:{n}",
                        "account": account,
                        "meter": "emails",
                        "period": "2026-07",
                        "threshold": "at_risk",
                        "num": 4,
                        "den": 5,
                        "strict": 0,
                        "limit": 1000,
                        "used": 800 + n,
                        "before": 799 + n,
                        "at_ms": int(time.time() * 1000),
                        "event_ms": int(time.time() * 1000),
                    },
                )
            await pipe.execute()
    await store.index_outboxes(accounts)


async def _round(base: Settings, accounts: list[str], entries: int) -> float:
    prefix = f"bench.publisher.{uuid.uuid4().hex[:8]}"
    settings = replace(
        base,
        thresholds_topic=f"{prefix}.thresholds",
        publisher_progress_topic=f"{prefix}.progress",
        publisher_transactional_id=f"{prefix}.publisher",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    store = RedisStateStore.from_url(settings.redis_url)
    try:
        await admin.create_topics(
            [
                NewTopic(settings.thresholds_topic, 3, 1),
                NewTopic(
                    settings.publisher_progress_topic,
                    1,
                    1,
                    topic_configs={"cleanup.policy": "compact"},
                ),
            ]
        )
        await _fill(store, accounts, entries)
        publisher = OutboxPublisher.from_settings(settings, store, client_id="bench-publisher")
        try:
            started = time.perf_counter()
            sent = await publisher.sweep()
            elapsed = time.perf_counter() - started
        finally:
            await publisher.close()
        if sent != len(accounts) * entries:
            raise SystemExit(f"published {sent} of {len(accounts) * entries} entries")
        return sent / elapsed
    finally:
        await store.close()
        await admin.delete_topics([settings.thresholds_topic, settings.publisher_progress_topic])
        await admin.close()


async def _main(args: argparse.Namespace) -> None:
    base = Settings(kafka_bootstrap=args.bootstrap, redis_url=args.redis_url)
    accounts = [f"bench-{i:04d}" for i in range(args.accounts)]
    rates = [await _round(base, accounts, args.entries) for _ in range(args.rounds)]
    total = args.accounts * args.entries
    figures = ", ".join(f"{r:,.0f}" for r in rates)
    print(
        f"publisher: {total:,} entries per round ({args.accounts} outboxes); entries/s: {figures}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
