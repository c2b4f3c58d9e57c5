"""The benchmark harness: every path on the same topic, in one run, side by side.

    python -m benchmarks.run [--events N] [--accounts A] [--smoke] [--out DIR]

1. Generates a Zipf-skewed event mix (benchmarks/workload.py) and preloads it into one topic.
2. Runs, one after another on that topic: a plain aiokafka consumer (read and discard), a naive
   consumer (one awaited Redis write per event), a faust-streaming app (windowed table), and our
   processor (`metering processor`). Each reports events/s and peak RSS; the harness checks
   that every path counted the same totals as the ground truth.
3. Measures our event-to-counter latency (p50/p99) at half our measured maximum rate, with
   probe events whose counter is watched in Redis.
4. Measures Redis memory per million distinct contacts and per remembered event id.
5. Writes JSON, a Markdown table and a plot (docs/benchmarks.md, docs/benchmarks.png).

Only loopback addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.workload import BENCH_PLAN, METER_OF_TYPE, Workload, accounts_json, generate
from metering.core.account_codec import account_from_json
from metering.core.deltas import Aggregation, Contribution, fold
from metering.core.periods import PeriodKind, period_of
from metering.core.ports import ApplyStep
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from streams.topics import ensure_topics

REPO = Path(__file__).resolve().parents[1]


@dataclass
class PathResult:
    path: str
    events: int
    seconds: float
    peak_rss_mb: float
    totals_match: bool
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- preparation -------------------------------------------------------------------------------


async def preload(settings: Settings, workload: Workload, partitions: int) -> float:
    """Produce the workload with the default partitioner; returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=50,
        max_batch_size=1024 * 1024,
        compression_type=None,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        partitioner = DefaultPartitioner()
        all_parts = list(range(partitions))
        by_part: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in workload.records:
            by_part.setdefault(partitioner(key, all_parts, all_parts), []).append((key, value))
        futures = []
        for part, records in by_part.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(
                        await producer.send_batch(batch, settings.events_topic, partition=part)
                    )
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, settings.events_topic, partition=part))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def publish_config(settings: Settings, workload: Workload) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        await writer.put_plan("bench", BENCH_PLAN, "bench.toml")
        docs = [*accounts_json(workload), {"id": "probe", "plan": "bench"}]
        await writer.put_accounts([account_from_json(a) for a in docs])
    finally:
        await producer.stop()


# -- the paths ---------------------------------------------------------------------------------


def expected_totals(workload: Workload) -> dict[str, int]:
    return {f"{a}|{t}": n for (a, t), n in workload.units.items()}


def run_peer(path: str, settings: Settings, workload: Workload, redis_url: str) -> PathResult:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.paths",
        path,
        "--bootstrap",
        settings.kafka_bootstrap,
        "--topic",
        settings.events_topic,
        "--expect",
        str(len(workload.records)),
        "--redis",
        redis_url,
    ]
    out = subprocess.run(cmd, capture_output=True, check=True, cwd=REPO, timeout=1800)
    result = orjson.loads(out.stdout.splitlines()[-1])
    if path == "plain":
        match = result["totals"] == {"*": len(workload.records)}
    else:
        match = result["totals"] == expected_totals(workload)
    return PathResult(path, result["events"], result["seconds"], result["peak_rss_mb"], match)


def run_faust(settings: Settings, workload: Workload, partitions: int) -> PathResult:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        env = dict(os.environ)
        env.update(
            BENCH_BOOTSTRAP=settings.kafka_bootstrap,
            BENCH_TOPIC=settings.events_topic,
            BENCH_EXPECT=str(len(workload.records)),
            BENCH_RESULT=str(result_file),
            BENCH_PARTITIONS=str(partitions),
            BENCH_APP_ID=f"bench-faust-{uuid.uuid4().hex[:6]}",
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.faust_app",
                "--datadir",
                tmp,
                "worker",
                "-l",
                "warn",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "faust.log", "wb"),  # noqa: SIM115
        )
        try:
            deadline = time.monotonic() + 1800
            while not result_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (Path(tmp) / "faust.log").read_text()[-2000:]
                    return PathResult("faust", 0, 0.0, 0.0, False, f"faust failed: {tail}")
                time.sleep(0.2)
            time.sleep(0.2)
            result = orjson.loads(result_file.read_bytes())
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    match = result["totals"] == expected_totals(workload)
    return PathResult("faust", result["events"], result["seconds"], result["peak_rss_mb"], match)


def processor_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env()}


async def end_offsets(settings: Settings, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.events_topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


def peak_rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_ours(
    settings: Settings, workload: Workload, partitions: int, store: RedisStateStore
) -> tuple[PathResult, subprocess.Popen[bytes]]:
    """Start our processor and time it from its first stored position to the end of the log.
    Returns the process still running (the latency phase uses it)."""
    ends = await end_offsets(settings, partitions)
    log_file = open(REPO / ".state" / "bench-processor.log", "wb")  # noqa: SIM115, ASYNC230
    proc = subprocess.Popen(
        [sys.executable, "-m", "metering.cli", "processor"],
        cwd=REPO,
        env=processor_env(settings),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    parts = list(range(partitions))
    started = 0.0
    already = 0
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        stored = await store.positions(settings.consumer_group, settings.events_topic, parts)
        if stored and not started:
            # The clock starts at the first stored position: the events applied before it
            # are left out of the rate.
            started = time.perf_counter()
            already = sum(offset + 1 for offset, _ in stored.values())
        if all(ends[p] == 0 or (p in stored and stored[p][0] + 1 >= ends[p]) for p in parts):
            break
        if proc.poll() is not None:
            raise RuntimeError("our processor exited; see .state/bench-processor.log")
        await asyncio.sleep(0.02)
    seconds = time.perf_counter() - started
    rss = peak_rss_of(proc.pid)
    month = period_of(PeriodKind.CALENDAR_MONTH, time.time_ns() // 1_000_000, "UTC").key
    totals: dict[str, int] = {}
    for account in workload.accounts:
        amounts = await store.read_amounts(
            account, [(m, month, Aggregation.COUNT) for m in METER_OF_TYPE.values()]
        )
        for event_type, meter in METER_OF_TYPE.items():
            value = amounts[(meter, month)]
            if value:
                totals[f"{account}|{event_type}"] = value
    match = totals == expected_totals(workload)
    timed = len(workload.records) - already
    note = f"timed {timed:,} events after the first stored position"
    return PathResult("ours", timed, seconds, rss, match, note), proc


# -- latency -----------------------------------------------------------------------------------


async def latency_at(
    settings: Settings,
    store: RedisStateStore,
    rate: float,
    seconds: float,
    accounts: int,
    spread: str = "zipf",
) -> dict[str, float]:
    """Run benchmarks/loadgen.py at `rate` for `seconds`; watch the probe account's counter.

    The k-th increment of the probe's counter is the k-th probe applied: its latency is the
    time the watcher saw it minus the time loadgen handed it to Kafka (wall clocks of one
    machine). The watcher polls every millisecond, so figures are +1 ms at most.
    """
    month = period_of(PeriodKind.CALENDAR_MONTH, time.time_ns() // 1_000_000, "UTC").key
    seen_at: list[float] = []
    done = asyncio.Event()

    metric = [("searches", month, Aggregation.COUNT)]
    already = (await store.read_amounts("probe", metric))[("searches", month)]

    async def watch() -> None:
        seen = already  # probes of an earlier measurement in the same run
        while not done.is_set():
            amounts = await store.read_amounts("probe", [("searches", month, Aggregation.COUNT)])
            now = time.time()
            value = amounts[("searches", month)]
            seen_at.extend([now] * max(0, value - seen))
            seen = max(seen, value)
            await asyncio.sleep(0.001)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loadgen.json"
        watcher = asyncio.create_task(watch())
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
            str(seconds),
            "--accounts",
            str(accounts),
            "--spread",
            spread,
            "--out",
            str(out),
            cwd=REPO,
        )
        await proc.wait()
        result = orjson.loads(out.read_bytes())
        probes: list[float] = result["probe_times"]
        deadline = time.monotonic() + 60
        while len(seen_at) < len(probes) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        done.set()
        await watcher
    latencies = sorted(s - p for s, p in zip(seen_at, probes, strict=False))
    return {
        "target_rate": rate,
        "achieved_rate": result["achieved_rate"],
        "probes": len(latencies),
        "probes_missing": len(probes) - len(latencies),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "max_ms": 1000 * latencies[-1] if latencies else float("nan"),
    }


# -- Redis memory ------------------------------------------------------------------------------


async def used_memory(client: aioredis.Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def memory_costs(redis_url: str, members: int) -> dict[str, float]:
    """Bytes per distinct contact (one large set) and per remembered event id (Zipf-like:
    1,000 accounts x ids, and 100,000 accounts x 10 ids, the compact small-set case)."""
    client = aioredis.Redis.from_url(redis_url)
    store = RedisStateStore(client)
    await client.flushdb()
    results: dict[str, float] = {}
    now = time.time_ns() // 1_000_000
    try:
        before = await used_memory(client)
        chunk = 5000
        offset = 0
        for start in range(0, members, chunk):
            contributions = [
                Contribution(
                    "active", "2026-11", Aggregation.DISTINCT, member=f"contact-{i:08d}@example.com"
                )
                for i in range(start, min(members, start + chunk))
            ]
            delta = fold("mem-distinct", contributions)
            delta.first_offset = delta.last_offset = offset
            offset += 1
            await store.apply([ApplyStep(delta, "t", 0, {})], dedup_window_s=3600, now_ms=now)
        results["bytes_per_distinct_contact"] = (await used_memory(client) - before) / members

        for label, accounts in (("large_sets", 1000), ("small_sets", members // 10)):
            await client.flushdb()
            before = await used_memory(client)
            per_account = members // accounts
            steps = []
            for a in range(accounts):
                delta = fold(f"mem-{a}", [])
                delta.event_ids = [f"{uuid.uuid4()}" for _ in range(per_account)]
                delta.first_offset = delta.last_offset = a
                steps.append(ApplyStep(delta, "t", a % 12, {}))
                if len(steps) == 200:
                    await store.apply(steps, dedup_window_s=3600, now_ms=now)
                    steps = []
            if steps:
                await store.apply(steps, dedup_window_s=3600, now_ms=now)
            # subtract the fence keys (one per account), which are not per-id costs
            fences = await _fence_bytes(client, accounts)
            results[f"bytes_per_event_id_{label}"] = (
                await used_memory(client) - before - fences
            ) / (per_account * accounts)
    finally:
        await client.flushdb()
        await client.aclose()
    return results


async def _fence_bytes(client: aioredis.Redis, accounts: int) -> float:
    sample = await client.memory_usage("mtr:{mem-0}:f:t:0") or 0
    return float(sample) * accounts


# -- report ------------------------------------------------------------------------------------


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmarks.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    rows = report["paths"]
    ours = next(r for r in rows if r["path"] == "ours")
    lines = [
        "| path | events | seconds | events/s | ours ÷ this | peak RSS (MiB) | totals match |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = ours["rate"] / r["rate"] if r["rate"] else float("nan")
        lines.append(
            f"| {r['path']} | {r['events']:,} | {r['seconds']:.2f} | {r['rate']:,.0f} | "
            f"{ratio:.2f} | {r['peak_rss_mb']:.0f} | {'yes' if r['totals_match'] else 'NO'} |"
        )
    table = "\n".join(lines)
    (out_dir / "benchmarks-table.md").write_text(table + "\n")
    ratios = report["ratios"]
    latency = report["latency_at_half_rate"]
    worst = report.get("latency_at_half_rate_round_robin") or {}
    memory = report["redis_memory"]
    targets = [
        f"- ours ÷ plain consumer: {ratios.get('plain', 0):.2f} (target >= 0.60)",
        f"- ours ÷ naive consumer: {ratios.get('naive') or 0:.1f}x (target >= 15x)",
        f"- ours ÷ faust-streaming: {ratios.get('faust') or 0:.1f}x (target >= 5x)",
        f"- ours: {ours['rate']:,.0f} events/s (issue 4's target: >= 100,000 events/s)",
    ]
    if latency:
        targets.append(
            f"- event-to-counter latency at {latency['achieved_rate']:,.0f} events/s (half our "
            f"rate): p50 {latency['p50_ms']:.0f} ms, p99 {latency['p99_ms']:.0f} ms, max "
            f"{latency['max_ms']:.0f} ms over {latency['probes']} probes (target p99 < 1,000 ms)"
        )
    if worst:
        targets.append(
            f"- the same with accounts in round-robin (every event its own account step, the "
            f"worst case for batching) at {worst['achieved_rate']:,.0f} events/s: p50 "
            f"{worst['p50_ms']:.0f} ms, p99 {worst['p99_ms']:.0f} ms, max {worst['max_ms']:.0f} ms"
        )
    for name, value in memory.items():
        targets.append(f"- Redis {name.replace('_', ' ')}: {value:.1f}")
    results = [
        f"# Benchmark results of {report['date']}",
        "",
        (
            f"{report['events']:,} events, {report['accounts']:,} Zipf-skewed accounts, "
            f"{report['partitions']} partitions; load average when the run ended {report.get('load', '?')}."
        ),
        "",
        table,
        "",
        *targets,
        "",
    ]
    (out_dir / "benchmarks-results.md").write_text("\n".join(results))
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([r["path"] for r in rows], [r["rate"] for r in rows], color="#4a7bb7")
        ax.set_xscale("log")
        ax.set_xlabel("events/s, log scale (one process each, same topic, same run)")
        ax.set_title(f"{report['events']:,} events, {report['accounts']:,} accounts")
        for i, r in enumerate(rows):
            ax.text(r["rate"], i, f" {r['rate']:,.0f}", va="center")
        fig.tight_layout()
        fig.savefig(out_dir / "benchmarks.png", dpi=110)
    except ImportError:
        log("matplotlib not installed: no plot")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("BENCH_KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    redis_base = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:26379")
    run_id = uuid.uuid4().hex[:8]
    settings = replace(
        Settings(),
        kafka_bootstrap=bootstrap,
        redis_url=f"{redis_base}/{args.redis_db}",
        events_topic=f"bench.events.{run_id}",
        dead_letter_topic=f"bench.dlq.{run_id}",
        late_topic=f"bench.late.{run_id}",
        thresholds_topic=f"bench.thresholds.{run_id}",
        statements_topic=f"bench.statements.{run_id}",
        tiers_topic=f"bench.tiers.{run_id}",
        accounts_topic=f"bench.accounts.{run_id}",
        consumer_group=f"bench-{run_id}",
        events_partitions=args.partitions,
        metrics_port=0,
    )
    # The naive consumer's keys (naive:*) share our database: both start from a flushed one.
    naive_url = settings.redis_url
    log(f"generating {args.events:,} events over {args.accounts:,} accounts")
    workload = generate(args.events, args.accounts)
    await ensure_topics(settings)
    await publish_config(settings, workload)
    seconds = await preload(settings, workload, args.partitions)
    log(f"preloaded in {seconds:.1f}s ({len(workload.records) / seconds:,.0f} events/s)")
    client = aioredis.Redis.from_url(settings.redis_url)
    await client.flushdb()
    store = RedisStateStore(client)

    results: list[PathResult] = []
    log("plain aiokafka consumer")
    results.append(run_peer("plain", settings, workload, naive_url))
    if not args.ours_only:
        log("naive consumer (one Redis write per event)")
        results.append(run_peer("naive", settings, workload, naive_url))
    if not args.no_faust and not args.ours_only:
        log("faust-streaming windowed table")
        results.append(run_faust(settings, workload, args.partitions))
    log("our processor")
    ours, proc = await run_ours(settings, workload, args.partitions, store)
    results.append(ours)
    for r in results:
        log(
            f"{r.path:6s} {r.events:>9,} events {r.seconds:7.2f}s {r.rate:>10,.0f}/s "
            f"rss {r.peak_rss_mb:6.0f} MiB totals {'match' if r.totals_match else 'DIFFER'} {r.note}"
        )
    latency: dict[str, float] = {}
    worst: dict[str, float] = {}
    try:
        if args.latency_seconds > 0:
            rate = ours.rate / 2
            log(f"latency at half our rate ({rate:,.0f} events/s) for {args.latency_seconds}s")
            latency = await latency_at(
                settings, store, rate, args.latency_seconds, len(workload.accounts)
            )
            log(f"latency {latency}")
            log("the same with accounts in round-robin (one account step per event)")
            worst = await latency_at(
                settings,
                store,
                rate,
                args.latency_seconds,
                len(workload.accounts),
                spread="round-robin",
            )
            log(f"latency round-robin {worst}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    memory: dict[str, float] = {}
    if args.memory_members:
        memory = await memory_costs(f"{redis_base}/{args.redis_db + 1}", args.memory_members)
    log(f"memory {memory}")
    await client.aclose()
    return {
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "events": args.events,
        "accounts": args.accounts,
        "partitions": args.partitions,
        "paths": [dict(r.__dict__, rate=r.rate) for r in results],
        "ratios": {r.path: (ours.rate / r.rate if r.rate else None) for r in results},
        "latency_at_half_rate": latency,
        "latency_at_half_rate_round_robin": worst,
        "redis_memory": memory,
        "all_totals_match": all(r.totals_match for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument("--memory-members", type=int, default=1_000_000)
    parser.add_argument(
        "--redis-db", type=int, default=10, help="our database (flushed); the next one for memory"
    )
    parser.add_argument("--no-faust", action="store_true")
    parser.add_argument(
        "--ours-only", action="store_true", help="only the plain consumer and ours (quick look)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    parser.add_argument("--smoke", action="store_true", help="tiny run: checks totals only")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.accounts, args.latency_seconds, args.memory_members = 3000, 200, 0, 0
    report = asyncio.run(main_async(args))
    if not args.smoke:
        write_report(args.out, report)
    print(orjson.dumps({k: v for k, v in report.items() if k != "paths"}).decode())
    sys.exit(0 if report["all_totals_match"] else 1)


if __name__ == "__main__":
    main()
