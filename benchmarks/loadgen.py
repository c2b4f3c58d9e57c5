"""Fixed-rate load for the latency measurement, in its own process.

    python -m benchmarks.loadgen --bootstrap B --topic T --rate R --seconds S --out FILE
                                 [--spread zipf|round-robin]

Every 10 ms it sends one batch per partition (search views for the workload's accounts, plus
one probe event for the account `probe`), so the producer never queues behind a busy event
loop. It writes the wall-clock time each probe was handed to Kafka; the harness watches the
probe's counter in Redis and pairs the k-th increment with the k-th probe.

Every record (id, JSON, partition) is built before the clock starts: the generator shares the
two cores with the system under test, and encoding, uuid4 and the Python partitioner cost ~10 µs
per event, which at 12,000 events/s took a tenth of a core from what is being measured.

`--spread zipf` (default) draws accounts with the throughput workload's Zipf activity
(`benchmarks.workload`, s = 1.1), so "half the maximum rate" is the same traffic at half the
speed. `--spread round-robin` cycles through every account: each account appears once per
`--accounts` events, so nearly every event is an account step of its own (the worst case for
batching, reported separately).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from bisect import bisect
from itertools import accumulate

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


Tick = dict[int, list[tuple[bytes, bytes]]]
"""One tick's records by partition: (key, value)."""


def build_ticks(args: argparse.Namespace, partitions: list[int]) -> list[Tick]:
    """Every tick's records, built up front (see the module docstring)."""
    partitioner = DefaultPartitioner()
    per_tick = max(1, round(args.rate * TICK_S))
    rng = random.Random(7)
    names = [account_name(i) for i in range(args.accounts)]
    cumulative = list(accumulate(1 / (i + 1) ** 1.1 for i in range(args.accounts)))
    part_of: dict[str, int] = {}
    ticks: list[Tick] = []
    start = time.time()
    for tick in range(int(args.seconds / TICK_S)):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + tick * TICK_S))
        by_part: Tick = {}
        for i in range(per_tick):
            if i == 0:
                account = "probe"
            elif args.spread == "zipf":
                account = names[bisect(cumulative, rng.random() * cumulative[-1])]
            else:
                account = names[(tick * per_tick + i) % args.accounts]
            key = account.encode()
            part = part_of.get(account)
            if part is None:
                part = part_of[account] = partitioner(key, partitions, partitions)
            by_part.setdefault(part, []).append((key, _doc(account, stamp)))
        ticks.append(by_part)
    return ticks


async def run(args: argparse.Namespace) -> dict[str, object]:
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=0)
    await producer.start()
    partitions = sorted(await producer.partitions_for(args.topic))
    prepared = build_ticks(args, partitions)
    probe_times: list[float] = []
    sent = 0
    begin = time.perf_counter()
    try:
        for tick, by_part in enumerate(prepared):
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
            sent += sum(len(records) for records in by_part.values())
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
    parser.add_argument("--spread", choices=["zipf", "round-robin"], default="zipf")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
