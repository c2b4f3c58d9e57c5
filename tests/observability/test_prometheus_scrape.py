"""A real Prometheus scrapes a real processor under a small load, and what ops would look at
is there: the series the dashboard and the alerts use, with the values the load implies.

One test (the set-up is the expensive part): a `metering processor` subprocess with its metrics
endpoint on a free loopback port; Debian's Prometheus on another, scraping it every second with
the shipped scrape job and rules; a few hundred events, a few of them bad. Then, through the
query API: counters equal what was produced, rejects by reason, histogram buckets, `up`, the
rules evaluate without error, the dead-letter alert goes pending on the bad share, every
dashboard query runs, and when the processor stops, `up` drops to 0 and the down alerts go
pending. Everything started here is stopped here.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import (
    ProcessorProcess,
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    produce,
    publish_config,
    wait_until,
)
from tests.observability.prom import (
    DASHBOARD,
    PROCESSOR_JOB,
    PrometheusServer,
    PrometheusTools,
    config_for_test,
    free_port,
)

pytestmark = pytest.mark.integration

ACCOUNTS = ("acme", "globex", "initech")
EMAILS_PER_ACCOUNT = 90  # 80 of the plan's 100 crosses `at_risk`: every account has a crossing
BAD_NOT_JSON = 5
BAD_UNKNOWN_ACCOUNT = 3
UP = f'up{{job="{PROCESSOR_JOB}"}}'


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(redis_url)
    yield s
    await s.close()


def _load() -> tuple[list[tuple[bytes | None, bytes | None]], int]:
    """Good events of three accounts and a few bad records; returns (records, good count)."""
    docs = [
        event(account, "email.sent", contact=f"c{i % 10}", kind="marketing")
        for account in ACCOUNTS
        for i in range(EMAILS_PER_ACCOUNT)
    ]
    docs += [event("acme", "contact.added", contact=f"p{i}", origin="api") for i in range(30)]
    good = encoded(docs)
    bad: list[tuple[bytes | None, bytes | None]] = [(b"acme", b"{nope")] * BAD_NOT_JSON
    bad += [
        (b"nobody", orjson.dumps(event("nobody", "email.sent", contact="c", kind="marketing")))
        for _ in range(BAD_UNKNOWN_ACCOUNT)
    ]
    # Bad records in the middle: the stream keeps flowing around them.
    return good[:100] + bad + good[100:], len(good)


async def _eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30
) -> None:
    await wait_until(check, timeout_s=timeout_s, what=what)


def _dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every dashboard target, Grafana's variables made concrete."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
            queries.append((panel["title"], expr))
    return queries


async def test_prometheus_scrapes_a_running_processor(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: TopicFactory,
    store: RedisStateStore,
    prometheus_tools: PrometheusTools,
    tmp_path: Path,
) -> None:
    settings: Settings = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    await publish_config(settings, [{"id": a, "plan": "it-plan"} for a in ACCOUNTS])
    metrics_port = free_port()
    processor = ProcessorProcess.start(
        settings, tmp_path / "processor.log", metrics_port=metrics_port
    )
    prometheus = PrometheusServer.start(
        prometheus_tools.prometheus,
        config_for_test(f"127.0.0.1:{metrics_port}"),
        tmp_path / "prometheus",
    )
    try:
        await prometheus.ready()
        await processor.ready()

        # A scrape before any event: every counter's first sample is 0, so rate() sees the load.
        async def scraped_up() -> bool:
            return await prometheus.value(UP) == 1.0

        await _eventually(scraped_up, "a first successful scrape of the processor")

        records, good = _load()
        total = len(records)
        await produce(settings, records)
        await wait_until(lambda: caught_up(settings, store), what="processor to catch up")

        async def seen(expr: str, want: float) -> bool:
            return await prometheus.value(expr) == want

        await _eventually(
            lambda: seen("metering_events_applied_total", good), "applied events in Prometheus"
        )
        assert await prometheus.value("metering_events_consumed_total") == total
        assert await prometheus.value("metering_events_applied_total > 0") == good
        rejected = {
            r["metric"]["reason"]: float(r["value"][1])
            for r in await prometheus.query("metering_events_rejected_total > 0")
        }
        assert rejected == {"not_json": BAD_NOT_JSON, "unknown_account": BAD_UNKNOWN_ACCOUNT}
        # Reasons without rejects exist at 0 (bounded label set, initialised up front).
        assert await prometheus.value('metering_events_rejected_total{reason="oversized"}') == 0
        assert await prometheus.value("count(metering_events_rejected_total)") >= 10  # type: ignore[operator]

        # Histograms: every bucket, count and sum present; quantiles computable.
        for name, buckets in (
            ("metering_redis_apply_seconds", 14),
            ("metering_batch_size_events", 12),
            ("metering_event_to_applied_seconds", 15),
        ):
            assert await prometheus.value(f"count({name}_bucket)") == buckets, name
            assert await prometheus.value(f'{name}_bucket{{le="+Inf"}}') == await prometheus.value(
                f"{name}_count"
            ), name
            assert (await prometheus.value(f"{name}_count") or 0) > 0, name
            p99 = await prometheus.value(
                f"histogram_quantile(0.99, sum by (le) (rate({name}_bucket[1m])))"
            )
            assert p99 is not None, name
            assert math.isfinite(p99), name
            assert p99 >= 0, name

        assert await prometheus.value("metering_assigned_partitions") == 3
        lag = await prometheus.query("metering_consumer_lag_records")
        assert lag
        assert all(r["metric"]["partition"] in {"0", "1", "2"} for r in lag)

        # Crossings decided and published (outboxes drained: oldest age back to 0).
        await _eventually(
            lambda: seen("metering_threshold_events_published_total", len(ACCOUNTS)),
            "threshold events published",
        )
        assert await prometheus.value("metering_threshold_crossings_total") == len(ACCOUNTS)
        await _eventually(
            lambda: seen("metering_outbox_oldest_entry_age_seconds", 0), "outbox age back to 0"
        )
        for name in (
            "metering_statement_events_published_total",
            "metering_tier_events_published_total",
            "metering_redis_errors_total",
            "metering_kafka_errors_total",
            "metering_retries_total",
        ):
            assert await prometheus.value(name) == 0, name
        assert (await prometheus.value("process_resident_memory_bytes") or 0) > 0

        # The shipped rules run on live data without errors...
        async def rules_evaluated() -> bool:
            groups = (await prometheus.api("rules"))["groups"]
            return all(r["health"] != "unknown" for g in groups for r in g["rules"])

        await _eventually(rules_evaluated, "every rule evaluated once")
        rules = [r for g in (await prometheus.api("rules"))["groups"] for r in g["rules"]]
        broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert not broken
        assert len(rules) >= 15
        ratio_query = f'job:metering_events_rejected:ratio_rate5m{{job="{PROCESSOR_JOB}"}}'

        async def ratio_recorded() -> bool:
            # The recording rule needs two scrapes with data inside its window: on a loaded
            # machine the first evaluations can still see an empty rate.
            return await prometheus.value(ratio_query) is not None

        await _eventually(ratio_recorded, "the dead-letter ratio recorded")
        ratio = await prometheus.value(ratio_query)
        assert ratio is not None
        assert 0.01 < ratio < 0.1

        # ...and the dead-letter alert sees the bad share (pending: its `for` is 10 minutes).
        async def alert_state(name: str) -> str | None:
            alerts = (await prometheus.api("alerts"))["alerts"]
            states = [a["state"] for a in alerts if a["labels"]["alertname"] == name]
            return states[0] if states else None

        async def pending(name: str) -> bool:
            return await alert_state(name) == "pending"

        await _eventually(lambda: pending("MeteringDeadLetterRate"), "dead-letter alert pending")
        assert await alert_state("MeteringProcessorDown") is None
        assert await alert_state("MeteringNoProcessorUp") is None

        # Every dashboard query is valid PromQL; the processor's panels all have data.
        for title, expr in _dashboard_queries():
            result = await prometheus.query(expr)  # asserts status == success
            if "API" not in title and "5xx" not in title and "Admission" not in title:
                assert result, f"dashboard panel {title!r} has no data: {expr}"

        # The processor stops: `up` drops to 0 and the down alerts go pending.
        assert processor.terminate() == 0

        async def down() -> bool:
            return await prometheus.value(UP) == 0.0

        await _eventually(down, "up == 0 after the processor stopped")
        await _eventually(lambda: pending("MeteringProcessorDown"), "processor-down alert")
        await _eventually(lambda: pending("MeteringNoProcessorUp"), "no-processor-up alert")
    finally:
        processor.stop_if_running()
        prometheus.stop()
