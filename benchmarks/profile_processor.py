"""Profile our processor in-process on a preloaded workload (cProfile; top functions printed).

    python -m benchmarks.profile_processor [--events N] [--accounts A]

Used to find where the time goes; docs/benchmarks.md records what was found and tried.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from benchmarks.run import preload, publish_config
from benchmarks.workload import generate
from metering.runtime.processor import running, tune_gc
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from streams.topics import ensure_topics


async def main_async(
    events: int,
    accounts: int,
    out: str,
    profile: bool = True,
    rate: float = 0,
    spread: str = "zipf",
) -> None:
    run_id = uuid.uuid4().hex[:8]
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:26379") + "/12"
    settings = replace(
        Settings(),
        kafka_bootstrap=os.environ.get("BENCH_KAFKA_BOOTSTRAP", "127.0.0.1:29092"),
        redis_url=redis_url,
        events_topic=f"prof.events.{run_id}",
        accounts_topic=f"prof.accounts.{run_id}",
        dead_letter_topic=f"prof.dlq.{run_id}",
        late_topic=f"prof.late.{run_id}",
        thresholds_topic=f"prof.thr.{run_id}",
        statements_topic=f"prof.st.{run_id}",
        tiers_topic=f"prof.tiers.{run_id}",
        consumer_group=f"prof-{run_id}",
        metrics_port=0,
    )
    workload = generate(events, accounts)
    await ensure_topics(settings)
    await publish_config(settings, workload)
    await preload(settings, workload, settings.events_partitions)
    await aioredis.Redis.from_url(redis_url).flushdb()
    store = RedisStateStore.from_url(redis_url)
    async with running(settings) as app:
        tune_gc()
        profiler = cProfile.Profile()
        stop = asyncio.Event()
        started = time.perf_counter()
        cpu_started = time.process_time()
        if profile:
            profiler.enable()
        task = asyncio.create_task(app.processor.run(stop))
        if rate:
            # Steady load instead of a preloaded backlog: small batches, as in production.
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.loadgen",
                "--bootstrap",
                settings.kafka_bootstrap,
                "--topic",
                settings.events_topic,
                "--rate",
                str(rate),
                "--seconds",
                "10",
                "--accounts",
                str(accounts),
                "--spread",
                spread,
                "--out",
                "/tmp/loadgen.json",
            )
            await proc.wait()
            events += int(orjson.loads(Path("/tmp/loadgen.json").read_bytes())["sent"])  # noqa: ASYNC240
        while True:
            await asyncio.sleep(0.05)
            stored = await store.positions(
                settings.consumer_group, settings.events_topic, range(settings.events_partitions)
            )
            if sum(o + 1 for o, _ in stored.values()) >= events:
                break
        stop.set()
        await task
        profiler.disable()
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    await store.close()
    how = "under cProfile" if profile else "no profiler"
    print(
        f"{events:,} events in {seconds:.2f}s = {events / seconds:,.0f}/s ({how}); "
        f"processor CPU {cpu:.2f}s = {cpu / events * 1e6:.1f} us per event"
    )
    if profile:
        profiler.dump_stats(out)
        pstats.Stats(out).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--out", default="/tmp/processor.prof")
    parser.add_argument("--no-profile", action="store_true", help="measure the rate only")
    parser.add_argument("--rate", type=float, default=0, help="steady load for 10 s instead")
    parser.add_argument("--spread", choices=["zipf", "round-robin"], default="zipf")
    args = parser.parse_args()
    asyncio.run(
        main_async(
            args.events, args.accounts, args.out, not args.no_profile, args.rate, args.spread
        )
    )


if __name__ == "__main__":
    main()
