"""Per-event cost of the processor's Python stages, in process, no Kafka or Redis.

    python -m benchmarks.micro [--events N] [--accounts A]

Decodes, maps, folds and encodes a preloaded workload the way `streams.processor` does, one
stage at a time, and prints microseconds per event for each (best of three). Used to decide
what to optimise (ADR 0005); the end-to-end figures come from `deploy/bench`.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from benchmarks.workload import BENCH_PLAN, accounts_json, generate
from metering.core.account_codec import account_from_json
from metering.core.directory import Directory
from metering.core.events import check_event, decode_event
from metering.core.fold import AccountWork
from metering.core.gauge_months import GaugeMonths
from metering.core.mapper import MapperLimits, PlanMapper
from metering.core.plan_loading import parse_plan
from metering.state.codec import encode_step

BATCH = 500
"""Records per partition batch in the fold stage (aiokafka's getmany hands out similar)."""


def best_of_three(items: Iterable[Any], stage: Callable[[Any], object]) -> float:
    """Microseconds per item of `stage`, the best of three passes."""
    values = list(items)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for value in values:
            stage(value)
        best = min(best, time.perf_counter() - started)
    return best / len(values) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    workload = generate(args.events, args.accounts)
    directory = Directory()
    directory.put_plan(parse_plan(BENCH_PLAN, source="bench.toml"))
    for doc in accounts_json(workload):
        directory.put_account(account_from_json(doc))
    limits = MapperLimits(grace_ms=3_600_000)
    mapper = GaugeMonths(
        PlanMapper(directory, limits), directory, grace_ms=3_600_000, retention_ms=400 * 86_400_000
    )
    now = time.time_ns() // 1_000_000 + 10_000
    values = [value for _, value in workload.records]
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    print(f"{len(values):,} events, {args.accounts:,} accounts; microseconds per event:")
    print(
        f"  check_event (checked decoder) {best_of_three(values, lambda v: check_event(v, now_ms=now)):6.2f}"
    )
    print(
        f"  decode_event (fast path)      {best_of_three(values, lambda v: decode_event(v, now_ms=now)):6.2f}"
    )
    print(
        f"  map (decode + rules)          {best_of_three(values, lambda v: mapper.map(v, now_ms=now, watermark_ms=0)):6.2f}"
    )
    mapped = [mapper.map(v, now_ms=now, watermark_ms=0) for v in values]
    batches = [
        list(enumerate(mapped[i : i + BATCH], start=i)) for i in range(0, len(mapped), BATCH)
    ]

    def fold_and_encode(batch: list[Any]) -> None:
        works: dict[str, AccountWork] = {}
        for offset, event in batch:
            work = works.get(event.account)
            if work is None:
                work = works[event.account] = AccountWork(event.account, "t", 0)
            work.add(offset, event)
        for work in works.values():
            encode_step(work.step(), dedup_window_s=86_400, now_ms=now)

    per_batch = best_of_three(batches, fold_and_encode)
    print(f"  fold + encode (batches of {BATCH})  {per_batch / BATCH:6.2f}")


if __name__ == "__main__":
    main()
