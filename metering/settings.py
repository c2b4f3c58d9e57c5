"""Service settings: one frozen object, read once from the environment.

Every process (processor, publisher, API, CLI) builds one `Settings` at start and passes it down;
no module reads the environment on its own, so tests can build any configuration they need.
Variable names are `METERING_<FIELD>` in upper case; docs/configuration.md lists them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from metering.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a metering process needs to know about its surroundings."""

    kafka_bootstrap: str = "127.0.0.1:19092"
    """Comma-separated Kafka bootstrap servers."""
    redis_url: str = field(default="redis://127.0.0.1:16379/0", repr=False)
    """Redis URL (redis:// or rediss:// for TLS; a password in the URL is never logged, so
    the URL is left out of the repr)."""
    redis_cluster: bool = False
    """Group each batch's account steps by hash slot, as Redis Cluster needs (every key of an
    account shares its slot); on a single Redis, steps of many accounts share one call."""
    kafka_security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    kafka_sasl_mechanism: str = ""
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when SASL is used."""
    kafka_sasl_username: str = ""
    """SASL user name."""
    kafka_sasl_password: str = field(default="", repr=False)
    """SASL password (never printed: excluded from repr)."""
    kafka_ssl_cafile: str = ""
    """CA bundle for SSL/SASL_SSL; empty uses the system's trust store."""
    events_topic: str = "metering.usage-events"
    """Usage events, keyed by account."""
    dead_letter_topic: str = "metering.dead-letter"
    """Rejected events: original bytes plus the reason in headers."""
    late_topic: str = "metering.late-events"
    """Events later than their period's end plus the grace."""
    thresholds_topic: str = "metering.thresholds"
    """Threshold crossings for billing, keyed by account, one deterministic id per crossing."""
    accounts_topic: str = "metering.accounts"
    """Compacted: account and plan configuration, keyed by account id."""
    statements_topic: str = "metering.period-statements"
    """Frozen totals of closed periods, one per (account, meter, period), keyed by account."""
    tiers_topic: str = "metering.tier-placements"
    """Tier placements (first placement and every change), keyed by account."""
    reminders_topic: str = "metering.reminders"
    """Reminders of thresholds still reached (`remind_every_days`), keyed by account."""
    reminder_interval_s: int = 60
    """How often the reminder scheduler (in every processor and `metering closer`) wakes to
    send due reminders; a reminder is sent at most this long after it falls due."""
    publisher_progress_topic: str = "metering.publisher-progress"
    """Compacted: the ids the outbox publishers have published, written in the same Kafka
    transaction as the messages themselves (ADR 0008); one partition per publisher shard."""
    publisher_transactional_id: str = "metering-publisher"
    """Prefix of the publishers' Kafka transactional ids (`<prefix>-<shard>`): a publisher
    taking a shard over fences the one that held it. Unique per deployment on one Kafka."""
    publisher_shards: int = 1
    """Shards of the accounts' outboxes (CRC-32 of the account): each is published by one
    publisher at a time, so up to this many publish in parallel. Change it only with every
    processor and publisher stopped."""
    consumer_group: str = "metering-processor"
    """Consumer group of the processors; positions in Redis are kept per group."""
    kafka_session_timeout_ms: int = 10_000
    """How long the group waits for a silent processor before moving its partitions."""
    events_partitions: int = 12
    """Partitions of the usage topic (`metering topics create`): the processors' parallelism."""
    events_retention_ms: int = 35 * 24 * 3600 * 1000
    """Retention of usage events: long enough to rebuild an open month from the log."""
    accept_lost_records: bool = False
    """When retention deleted usage records a processor had not applied yet, skip them (log,
    `metering_records_lost_total`) instead of stopping with StateLost; also
    `metering processor --accept-lost-records`."""
    dedup_window_s: int = 24 * 3600
    """An event id seen again within this window counts once."""
    grace_s: int = 3600
    """How long after a period's end its late events are still counted."""
    max_future_s: int = 300
    """Events stamped further than this in the future are rejected."""
    max_event_bytes: int = 64 * 1024
    """Larger events are rejected as `oversized`."""
    batch_max_records: int = 5000
    """Records fetched per `getmany` call and partition batch."""
    retention_days: int = 400
    """Counters and rollups of closed periods are kept this long (13 months and more)."""
    hold_ttl_s: int = 900
    """How long an admission hold on a counter or balance lasts when no event captures it or
    releases it (docs/api.md, "Holds"): its units are then free again."""
    api_host: str = "127.0.0.1"
    """Address the API listens on."""
    api_port: int = 8080
    """Port of the API (and its dashboard)."""
    metrics_port: int = 9308
    """Port of the processor's Prometheus endpoint on 127.0.0.1; 0 turns it off."""
    api_kafka_write_timeout_ms: int = 5000
    """How long an API call that writes to Kafka (account changes, top-ups) waits for the
    broker before answering 503 `kafka_unavailable`; also bounds the API's Kafka start-up."""
    api_idempotency_ttl_s: int = 24 * 3600
    """How long the API remembers the answer of a write sent with an `Idempotency-Key`."""
    api_events_per_s: int = 1000
    """Events per second per API key at `POST /v1/events` (a bucket of its own)."""
    api_events_burst: int = 2000
    """Burst of that bucket, and the most events one batch may hold."""

    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (`--debug` on the command line forces DEBUG);
    aiokafka's own lines are held at WARNING unless this is DEBUG."""
    log_format: str = "text"
    """`text`, `json` (one JSON object per line, with request id, partition and account where
    known), or `auto`: text when stderr is a terminal, JSON otherwise."""

    def to_env(self) -> dict[str, str]:
        """The `METERING_*` variables that give a child process these settings (the inverse
        of `from_env`; secrets included, as the child needs them: never log the result)."""
        return {f"METERING_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `METERING_*` variables; unknown types or bad numbers raise `ConfigError`."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f"METERING_{f.name.upper()}"
            raw = env.get(name)
            if raw is None:
                continue
            if f.type in ("bool", bool):
                if raw.lower() not in ("0", "1", "true", "false", "yes", "no"):
                    raise ConfigError(name, f"expected true or false, got {raw!r}")
                values[f.name] = raw.lower() in ("1", "true", "yes")
            elif f.type in ("int", int):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigError(name, f"expected an integer, got {raw!r}") from None
            else:
                values[f.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse values the clients would only refuse later with a traceback: each
        `ConfigError` names the variable, what it holds and what it accepts."""
        choices = {
            "kafka_security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
            "log_level": ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
            "log_format": ("auto", "text", "json"),
        }
        if self.kafka_sasl_mechanism:
            choices["kafka_sasl_mechanism"] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        for name, allowed in choices.items():
            value = getattr(self, name)
            if (value.upper() if name == "log_level" else value) not in allowed:
                expected = f"expected one of {', '.join(allowed)}, got {value!r}"
                raise ConfigError(f"METERING_{name.upper()}", expected)
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "METERING_REDIS_URL",
                "must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)",
            )
        if not self.kafka_bootstrap.strip():
            raise ConfigError("METERING_KAFKA_BOOTSTRAP", "is empty: give host:port[,host:port]")
