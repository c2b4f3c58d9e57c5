"""The processor's metrics bundle (streams/metrics.py), without services: it registers on the
registry it is given, its names follow the Prometheus conventions, its labels are bounded, and
the publisher feeds the outbox-age and error metrics."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from metering.core.errors import RejectReason, StateStoreUnavailable, StreamUnavailable
from metering.core.ports import OutboxEntry
from metering.state.redis_store import RedisStateStore
from sinks.outbox_publisher import OutboxPublisher
from streams.metrics import ProcessorMetrics

NAME = re.compile(r"^metering_[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Base units (seconds, bytes) or the thing counted; never ms/minutes or a bare number.
UNIT_SUFFIXES = ("_seconds", "_bytes", "_records", "_events", "_accounts", "_partitions", "_ratio")
BAD_UNITS = re.compile(
    r"_(ms|millis|milliseconds|us|microseconds|minutes|hours|percent|kb|mb)(_|$)"
)
ALLOWED_LABELS = {"reason", "partition"}
# Labels that would make a series per customer or per member: unbounded.
FORBIDDEN_LABELS = {"account", "account_id", "subject", "tenant", "contact", "member", "event_id"}

EXPECTED = {
    # counters (exposed with _total)
    "metering_events_consumed_total",
    "metering_events_applied_total",
    "metering_events_rejected_total",
    "metering_events_deduplicated_total",
    "metering_events_replayed_total",
    "metering_events_late_total",
    "metering_redis_errors_total",
    "metering_kafka_errors_total",
    "metering_retries_total",
    "metering_threshold_crossings_total",
    "metering_threshold_events_published_total",
    "metering_statement_events_published_total",
    "metering_tier_events_published_total",
    "metering_reminder_events_published_total",
    "metering_positions_out_of_range_total",
    "metering_records_lost_total",
    "metering_dead_letters_truncated_total",
    # histograms
    "metering_batch_size_events",
    "metering_redis_apply_seconds",
    "metering_event_to_applied_seconds",
    # gauges
    "metering_consumer_lag_records",
    "metering_outbox_pending_accounts",
    "metering_outbox_oldest_entry_age_seconds",
    "metering_assigned_partitions",
}


def exposed_names(registry: CollectorRegistry) -> dict[str, str]:
    """Name as Prometheus stores it (counters with `_total`) -> type, for the bundle's families."""
    names = {}
    for family in registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        names[name] = family.type
    return names


def test_registers_on_the_given_registry_only() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    ProcessorMetrics.create(first)
    ProcessorMetrics.create(second)  # a fresh registry each time: no global state
    assert set(exposed_names(first)) == EXPECTED
    assert set(exposed_names(second)) == EXPECTED
    assert not [n for n in exposed_names(REGISTRY) if n.startswith("metering_")]
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ProcessorMetrics.create(first)


def test_names_follow_prometheus_conventions() -> None:
    registry = CollectorRegistry()
    ProcessorMetrics.create(registry)
    for name, kind in exposed_names(registry).items():
        assert NAME.match(name), name
        assert not BAD_UNITS.search(name), f"{name}: use base units (seconds, bytes)"
        if kind == "counter":
            assert name.endswith("_total"), name
            assert name.count("_total") == 1, name
        else:
            assert not name.endswith("_total"), f"{name}: only counters end in _total"
            assert name.endswith(UNIT_SUFFIXES), f"{name} ({kind}): say the unit in the name"
    # What Prometheus actually receives: TYPE lines and _total samples of counters.
    text = generate_latest(registry).decode()
    assert "# TYPE metering_events_applied_total counter" in text
    assert "# TYPE metering_redis_apply_seconds histogram" in text
    assert 'metering_redis_apply_seconds_bucket{le="+Inf"} 0.0' in text


def test_labels_are_bounded_and_never_accounts() -> None:
    registry = CollectorRegistry()
    metrics = ProcessorMetrics.create(registry)
    metrics.consumer_lag.labels(partition="3").set(7)
    labels: set[str] = set()
    for family in registry.collect():
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
    assert labels <= ALLOWED_LABELS, labels
    assert not labels & FORBIDDEN_LABELS


def test_every_reject_reason_starts_at_zero() -> None:
    """A reason's series exists before its first reject, so rate() counts that first reject."""
    registry = CollectorRegistry()
    ProcessorMetrics.create(registry)
    for reason in RejectReason:
        value = registry.get_sample_value("metering_events_rejected_total", {"reason": reason})
        assert value == 0, reason


def test_count_error_by_system() -> None:
    registry = CollectorRegistry()
    metrics = ProcessorMetrics.create(registry)
    metrics.count_error(StateStoreUnavailable("redis down"))
    metrics.count_error(StreamUnavailable("kafka down"))
    metrics.count_error(StreamUnavailable("kafka down"))
    metrics.count_error(ValueError("not ours"))
    assert registry.get_sample_value("metering_redis_errors_total") == 1
    assert registry.get_sample_value("metering_kafka_errors_total") == 2
    assert registry.get_sample_value("metering_retries_total") == 3


class _FakeStore:
    """The few store calls `publish_indexed` makes; every shard is claimed elsewhere, so the
    publisher only measures and sends nothing (no Kafka client is ever made)."""

    def __init__(self, outboxes: dict[str, list[int]]) -> None:
        self.outboxes = outboxes

    async def indexed_outboxes(self) -> list[str]:
        return list(self.outboxes)

    async def read_outbox(self, account: str, count: int = 500) -> list[OutboxEntry]:
        return [
            OutboxEntry(f"{at}-0", {"id": f"{account}:{at}", "at_ms": str(at)})
            for at in self.outboxes[account][:count]
        ]

    async def claim_publisher_shard(self, shard: int, owner: str, ttl_ms: int) -> bool:
        return False


async def test_publisher_reports_pending_outboxes_and_the_oldest_entry_age() -> None:
    registry = CollectorRegistry()
    metrics = ProcessorMetrics.create(registry)
    store = _FakeStore({"a": [40_000, 90_000], "b": [70_000], "c": []})
    publisher = OutboxPublisher(
        cast(RedisStateStore, store),
        cast(Any, None),
        cast(Any, None),
        topic="t",
        on_pending=metrics.outbox_accounts.set,
        on_oldest_age=metrics.outbox_oldest_age_seconds.set,
        clock_ms=lambda: 100_000,
    )
    await publisher.publish_indexed()
    assert registry.get_sample_value("metering_outbox_pending_accounts") == 3
    assert registry.get_sample_value("metering_outbox_oldest_entry_age_seconds") == 60.0
    store.outboxes = {}
    await publisher.publish_indexed()
    assert registry.get_sample_value("metering_outbox_oldest_entry_age_seconds") == 0.0
