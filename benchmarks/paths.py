"""The peers our processor is measured against, each run as its own process.

`python -m benchmarks.paths plain|naive --bootstrap B --topic T --expect N [--redis URL]`
prints one JSON line: events, seconds (first record received -> last record handled), rate,
peak RSS and the totals it counted, so the harness can check every path counted the same.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer


async def _consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    consumer.subscribe([topic])
    return consumer


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not `ru_maxrss`: across fork + exec it keeps the
    parent's peak, and the harness that forks us holds the whole workload in memory."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def plain(bootstrap: str, topic: str, expect: int) -> dict[str, object]:
    """Read and discard: the ceiling of a Python (aiokafka) consumer."""
    consumer = await _consumer(bootstrap, topic)
    seen = 0
    started = 0.0
    try:
        while seen < expect:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                if records and not started:
                    started = time.perf_counter()
                seen += len(records)
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    return {"path": "plain", "events": seen, "seconds": seconds, "totals": {"*": seen}}


async def naive(bootstrap: str, topic: str, expect: int, redis_url: str) -> dict[str, object]:
    """What most people write first: decode each event, one awaited Redis write per event."""
    consumer = await _consumer(bootstrap, topic)
    client = aioredis.Redis.from_url(redis_url)
    seen = 0
    started = 0.0
    accounts: set[str] = set()
    try:
        while seen < expect:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                if records and not started:
                    started = time.perf_counter()
                for record in records:
                    doc = orjson.loads(record.value)
                    units = doc["data"]["quantity"] if doc["type"] == "recommendation.viewed" else 1
                    await client.hincrby(f"naive:{doc['subject']}", doc["type"], units)
                    accounts.add(doc["subject"])
                seen += len(records)
        seconds = time.perf_counter() - started
        totals: Counter[str] = Counter()
        names = sorted(accounts)
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(f"naive:{name}")
        for name, row in zip(names, await pipe.execute(), strict=True):
            for event_type, units in row.items():
                totals[f"{name}|{event_type.decode()}"] = int(units)
    finally:
        await consumer.stop()
        await client.aclose()
    return {"path": "naive", "events": seen, "seconds": seconds, "totals": dict(totals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", choices=["plain", "naive"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--redis", default="")
    args = parser.parse_args()
    if args.path == "plain":
        result = asyncio.run(plain(args.bootstrap, args.topic, args.expect))
    else:
        result = asyncio.run(naive(args.bootstrap, args.topic, args.expect, args.redis))
    result["peak_rss_mb"] = peak_rss_mb()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
