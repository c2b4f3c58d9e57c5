"""Prometheus metrics of the processor and the publisher, as one typed bundle.

The registry is injected (tests read a fresh `CollectorRegistry` with `get_sample_value`); no
module-level metric objects. Label sets are bounded: no account ids as labels (an account label
would make one series per customer and per metric: unbounded memory in Prometheus); the only
labels are a reject `reason` (a closed enum) and a Kafka `partition` (bounded by the topic).
Names follow the Prometheus conventions: `metering_` prefix, base units in the name
(`_seconds`, `_records`, `_events`), `_total` on counters. docs/observability.md lists them with
the alert rules and the dashboard that use them; tests/observability/ checks both.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metering.core.errors import RejectReason, StateStoreError, StreamError

_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


@dataclass(frozen=True, slots=True)
class ProcessorMetrics:
    """Everything ops watch about the usage processor."""

    consumed: Counter
    applied: Counter
    rejected: Counter
    deduplicated: Counter
    replayed: Counter
    late: Counter
    batch_size: Histogram
    apply_seconds: Histogram
    event_lag_seconds: Histogram
    consumer_lag: Gauge
    redis_errors: Counter
    kafka_errors: Counter
    retries: Counter
    crossings: Counter
    published: Counter
    outbox_accounts: Gauge
    outbox_oldest_age_seconds: Gauge
    statements_published: Counter
    tiers_published: Counter
    reminders_published: Counter
    assigned_partitions: Gauge
    out_of_range: Counter
    records_lost: Counter
    dead_letters_truncated: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ProcessorMetrics:
        """Register the bundle's metrics on `registry`."""
        ns = "metering"
        metrics = cls(
            consumed=Counter(
                "events_consumed",
                "Records read from the usage topic.",
                namespace=ns,
                registry=registry,
            ),
            applied=Counter(
                "events_applied", "Events counted into Redis.", namespace=ns, registry=registry
            ),
            rejected=Counter(
                "events_rejected",
                "Events sent to the dead-letter topic, by reason.",
                ["reason"],
                namespace=ns,
                registry=registry,
            ),
            deduplicated=Counter(
                "events_deduplicated",
                "Events dropped because their id was already counted.",
                namespace=ns,
                registry=registry,
            ),
            replayed=Counter(
                "events_replayed",
                "Events skipped because their account fence already covered them (replays).",
                namespace=ns,
                registry=registry,
            ),
            late=Counter(
                "events_late",
                "Events sent to the late topic (period closed).",
                namespace=ns,
                registry=registry,
            ),
            batch_size=Histogram(
                "batch_size_events",
                "Records per processed batch.",
                namespace=ns,
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            apply_seconds=Histogram(
                "redis_apply_seconds",
                "Time of one Redis apply round trip.",
                namespace=ns,
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            event_lag_seconds=Histogram(
                "event_to_applied_seconds",
                "From an event's Kafka timestamp to its counters applied in Redis.",
                namespace=ns,
                buckets=_LAG_BUCKETS,
                registry=registry,
            ),
            consumer_lag=Gauge(
                "consumer_lag_records",
                "Records behind the partition end.",
                ["partition"],
                namespace=ns,
                registry=registry,
            ),
            out_of_range=Counter(
                "positions_out_of_range",
                "Fetch positions found below the log start (retention deleted records not "
                "applied yet): refused with StateLost, or skipped with --accept-lost-records.",
                ["partition"],
                namespace=ns,
                registry=registry,
            ),
            records_lost=Counter(
                "records_lost",
                "Records deleted by retention before they were applied, skipped because "
                "--accept-lost-records (METERING_ACCEPT_LOST_RECORDS) was given.",
                ["partition"],
                namespace=ns,
                registry=registry,
            ),
            dead_letters_truncated=Counter(
                "dead_letters_truncated",
                "Side-output records too large to forward whole: their summary (first bytes, "
                "size, SHA-256) went to the dead-letter topic instead.",
                namespace=ns,
                registry=registry,
            ),
            redis_errors=Counter(
                "redis_errors",
                "Redis operations that failed (processor and outbox publisher).",
                namespace=ns,
                registry=registry,
            ),
            kafka_errors=Counter(
                "kafka_errors",
                "Kafka operations that failed (processor and outbox publisher).",
                namespace=ns,
                registry=registry,
            ),
            retries=Counter(
                "retries",
                "Operations retried after a transient Redis or Kafka failure.",
                namespace=ns,
                registry=registry,
            ),
            crossings=Counter(
                "threshold_crossings",
                "Threshold crossings decided (written to an outbox).",
                namespace=ns,
                registry=registry,
            ),
            published=Counter(
                "threshold_events_published",
                "Threshold events delivered to Kafka.",
                namespace=ns,
                registry=registry,
            ),
            outbox_accounts=Gauge(
                "outbox_pending_accounts",
                "Accounts with crossings waiting to be published.",
                namespace=ns,
                registry=registry,
            ),
            outbox_oldest_age_seconds=Gauge(
                "outbox_oldest_entry_age_seconds",
                "Age of the oldest crossing waiting in an indexed outbox (0: none waiting).",
                namespace=ns,
                registry=registry,
            ),
            statements_published=Counter(
                "statement_events_published",
                "Period statements (frozen totals of closed periods) delivered to Kafka.",
                namespace=ns,
                registry=registry,
            ),
            tiers_published=Counter(
                "tier_events_published",
                "Tier placements (first placement and changes) delivered to Kafka.",
                namespace=ns,
                registry=registry,
            ),
            reminders_published=Counter(
                "reminder_events_published",
                "Reminders of thresholds still reached delivered to Kafka.",
                namespace=ns,
                registry=registry,
            ),
            assigned_partitions=Gauge(
                "assigned_partitions",
                "Partitions this processor owns.",
                namespace=ns,
                registry=registry,
            ),
        )
        # Every reason exists from the start at 0: Prometheus's rate() sees no increase in a
        # series whose first sample is already 3, so a first burst of rejects would be missed.
        for reason in RejectReason:
            metrics.rejected.labels(reason=reason.value)
        return metrics

    def count_error(self, exc: BaseException) -> None:
        """Count a transient failure handled elsewhere (the publisher's loop) by system, and
        the retry that follows it; other errors are not Redis's or Kafka's."""
        if isinstance(exc, StateStoreError):
            self.redis_errors.inc()
        elif isinstance(exc, StreamError):
            self.kafka_errors.inc()
        else:
            return
        self.retries.inc()
