"""Run the fault suite and print (or write) its figures: `deploy/faults` calls this.

    python -m tests.reliability.run_faults                 # full length (docs/reliability.md)
    python -m tests.reliability.run_faults --reduced       # what the test suite runs
    python -m tests.reliability.run_faults --cases sigkill,rebalance --seed 7
    python -m tests.reliability.run_faults --json out.json --markdown out.md

Kafka: the shared test stack's broker (METERING_TEST_KAFKA_BOOTSTRAP, or the one
`deploy/local/stack.sh --profile test` runs; it is started when down and left running), only for
topics each case creates and deletes. The broker-restart case starts a private broker, the
leader-change case a private three-node cluster.
Redis: every case starts its own. Exit status 0 when every case matched the truth exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tests.reliability import cases
from tests.reliability.cases import CASES, FULL, REDUCED, CaseResult, Scale
from tests.stack import find_stack

REPO = Path(__file__).resolve().parents[2]


def test_stack_bootstrap() -> str:
    """The shared test stack's broker, started (and left running) when it is down."""
    if given := os.environ.get("METERING_TEST_KAFKA_BOOTSTRAP"):
        return given
    return find_stack("kafka")[0].kafka_bootstrap


async def run(names: list[str], scale: Scale, seed: int) -> list[CaseResult]:
    bootstrap = test_stack_bootstrap()
    results = []
    for i, name in enumerate(names):
        began = time.monotonic()
        print(f"== {name} ...", flush=True)
        try:
            result = await CASES[name](bootstrap, scale, seed + i)
        except Exception as exc:  # a case that could not finish is a failed case
            result = CaseResult(name, wall_s=time.monotonic() - began)
            result.expectation_failures.append(f"{type(exc).__name__}: {exc}")
        print(result.summary(), flush=True)
        results.append(result)
    return results


def totals(results: list[CaseResult]) -> dict[str, int]:
    """Sums over the cases, for the headline table."""
    out = {
        "faults": 0,
        "events": 0,
        "records": 0,
        "lost": 0,
        "doubled": 0,
        "crossings_expected": 0,
        "crossings_missing": 0,
        "crossings_unexpected": 0,
        "crossing_deliveries": 0,
        "crossing_duplicates": 0,
        "processor_starts": 0,
    }
    for r in results:
        out["faults"] += sum(r.faults.values())
        out["processor_starts"] += r.processors_started
        v = r.verdict
        if v is None:
            continue
        out["events"] += v.events
        out["records"] += v.records
        out["lost"] += v.lost
        out["doubled"] += v.doubled
        out["crossings_expected"] += v.crossings_expected
        out["crossings_missing"] += v.crossings_missing
        out["crossings_unexpected"] += v.crossings_unexpected
        out["crossing_deliveries"] += v.crossing_deliveries
        out["crossing_duplicates"] += v.crossing_duplicates
    return out


def markdown(results: list[CaseResult], scale_name: str, seed: int, wall_s: float) -> str:
    """The figures table of docs/reliability.md."""
    header = (
        "| case | faults injected | events (records) | lost | counted twice | crossings "
        "expected / distinct published / missing | deliveries (duplicates) | dead letters "
        "expected / missing | processor starts | wall | result |"
    )
    rows = [
        header,
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        faults = "<br>".join(f"{k}: {v}" for k, v in r.faults.items()) or "-"
        v = r.verdict
        if v is None:
            figures = "| - | - | - | - | - | - "
        else:
            figures = (
                f"| {v.events} ({v.records}) | {v.lost} | {v.doubled} | "
                f"{v.crossings_expected} / {v.crossings_distinct} / {v.crossings_missing} | "
                f"{v.crossing_deliveries} ({v.crossing_duplicates}) | "
                f"{v.dead_letters_expected} / {v.dead_letters_missing} "
            )
        rows.append(
            f"| `{r.name}` | {faults} {figures}| {r.processors_started} | {r.wall_s:.0f} s | "
            f"{'pass' if r.ok else 'FAIL'} |"
        )
    t = totals(results)
    rows.append(
        f"| **total** | {t['faults']} | {t['events']} ({t['records']}) | {t['lost']} | "
        f"{t['doubled']} | {t['crossings_expected']} / - / {t['crossings_missing']} | "
        f"{t['crossing_deliveries']} ({t['crossing_duplicates']}) | | {t['processor_starts']} | "
        f"{wall_s:.0f} s | {'pass' if all(r.ok for r in results) else 'FAIL'} |"
    )
    head = f"Scale `{scale_name}`, seed {seed}.\n\n"
    return head + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reduced", action="store_true", help="the test suite's short version")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the figures table here")
    parser.add_argument("--keep", type=Path, help="keep each case's folder (logs) under here")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        cases.KEEP.append(args.keep.resolve())
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(CASES)}")
    logging.basicConfig(level=logging.WARNING)
    # The suite's own clients complain loudly while a broker restarts; the processors'
    # logs (in each case's folder) are what matters.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    scale, scale_name = (REDUCED, "reduced") if args.reduced else (FULL, "full")
    began = time.monotonic()
    results = asyncio.run(run(names, scale, args.seed))
    wall_s = time.monotonic() - began
    table = markdown(results, scale_name, args.seed, wall_s)
    print()
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        payload = {
            "scale": scale_name,
            "seed": args.seed,
            "wall_s": wall_s,
            "totals": totals(results),
            "cases": [
                {
                    **asdict(r),
                    "ok": r.ok,
                    "crossing_duplicates": r.verdict.crossing_duplicates if r.verdict else None,
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    ok = all(r.ok for r in results)
    print(f"fault suite ({scale_name}): {'PASSED' if ok else 'FAILED'} in {wall_s:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
