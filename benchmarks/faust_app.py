"""The faust-streaming peer: the same counting in a windowed faust table.

Run by the harness as `python -m benchmarks.faust_app worker -l warning` with BENCH_* variables;
when it has handled BENCH_EXPECT events it writes its result (time from first to last event,
peak RSS, totals read back from the table) to BENCH_RESULT and the harness stops it.
Windows here are relative to wall-clock time (faust's default): every event of the workload
falls in the current window, so the table's current values are the totals.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

import faust
import orjson

from benchmarks.paths import peak_rss_mb

BOOTSTRAP = os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:29092")
TOPIC = os.environ.get("BENCH_TOPIC", "bench")
EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
RESULT = os.environ.get("BENCH_RESULT", "/tmp/faust-result.json")

app = faust.App(
    os.environ.get("BENCH_APP_ID", "bench-faust"),
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "12")),
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=65536,
)
events = app.topic(TOPIC, value_serializer="raw", key_serializer="raw")
counts = app.Table("counts", default=int, key_type=str, value_type=int).tumbling(
    timedelta(days=31), expires=timedelta(days=62)
)
state: dict[str, Any] = {"seen": 0, "started": 0.0, "keys": set()}


@app.agent(events)
async def count(stream: Any) -> None:
    async for value in stream:
        if not state["started"]:
            state["started"] = time.perf_counter()
        doc = orjson.loads(value)
        units = doc["data"]["quantity"] if doc["type"] == "recommendation.viewed" else 1
        key = f"{doc['subject']}|{doc['type']}"
        counts[key] += units
        state["keys"].add(key)
        state["seen"] += 1
        if state["seen"] == EXPECT:
            seconds = time.perf_counter() - state["started"]
            totals = {k: counts[k].now() for k in sorted(state["keys"])}
            result = {
                "path": "faust",
                "events": state["seen"],
                "seconds": seconds,
                "totals": totals,
                "peak_rss_mb": peak_rss_mb(),
            }
            with open(RESULT, "wb") as out:  # noqa: ASYNC230 - once, at the end
                out.write(orjson.dumps(result))


if __name__ == "__main__":
    app.main()
