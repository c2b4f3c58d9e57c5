"""Fixed-rate load for the latency measurement, in its own process.

    python -m benchmarks.loadgen --bootstrap B --topic T --rate R --seconds S --out FILE

Every 10 ms it sends one batch per partition (pre-encoded search views for the workload's
accounts, plus one probe event for the account `probe`), so the producer never queues behind
a busy event loop. It writes the wall-clock time each probe was handed to Kafka; the harness
watches the probe's counter in Redis and pairs the k-th increment with the k-th probe.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.workload import account_name

TICK_S = 0.01


def _doc(account: str, stamp: str) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"lat-{uuid.uuid4().hex}",
            "source": "bench",
            "type": "search.viewed",
            "subject": account,
            "time": stamp,
            "data": {"surface": "instant"},
        }
    )


async def run(args: argparse.Namespace) -> dict[str, object]:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=0)
    await producer.start()
    partitions = sorted(await producer.partitions_for(args.topic))
    partitioner = DefaultPartitioner()
    per_tick = max(1, round(args.rate * TICK_S))
    probe_times: list[float] = []
    sent = 0
    begin = time.perf_counter()
    ticks = int(args.seconds / TICK_S)
    try:
        for tick in range(ticks):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            by_part: dict[int, list[tuple[bytes, bytes]]] = {}
            for i in range(per_tick):
                account = "probe" if i == 0 else account_name((tick * per_tick + i) % args.accounts)
                key = account.encode()
                part = partitioner(key, partitions, partitions)
                by_part.setdefault(part, []).append((key, _doc(account, stamp)))
            futures = []
            probe_at = time.time()
            for part, records in by_part.items():
                batch = producer.create_batch()
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, args.topic, partition=part))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                futures.append(await producer.send_batch(batch, args.topic, partition=part))
            probe_times.append(probe_at)
            sent += per_tick
            await asyncio.gather(*futures)
            next_tick = begin + (tick + 1) * TICK_S
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - begin
    return {"probe_times": probe_times, "sent": sent, "achieved_rate": sent / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
