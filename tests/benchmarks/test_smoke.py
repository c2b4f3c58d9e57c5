"""A tiny run of the benchmark harness: every path (plain consumer, naive consumer,
faust-streaming, our processor) counts the same totals as the ground truth. Speed is not
checked here; `deploy/bench` measures it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_every_path_of_the_harness_counts_the_same_totals(
    kafka_bootstrap: str, redis_url: str
) -> None:
    parts = urlsplit(redis_url)
    env = dict(os.environ)
    env["BENCH_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env["BENCH_REDIS_URL"] = f"{parts.scheme}://{parts.netloc}"
    db = parts.path.strip("/")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--redis-db", db],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )
    output = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, output[-4000:]
    summary = orjson.loads(done.stdout.decode().strip().splitlines()[-1])
    assert summary["all_totals_match"] is True
    assert set(summary["ratios"]) == {"plain", "naive", "faust", "ours"}
    lines = output.splitlines()
    for path in ("plain", "naive", "faust", "ours"):
        [line] = [x for x in lines if f"] {path:6s} " in x and " events " in x]
        assert line.rstrip().endswith("totals match") or "totals match " in line, line
