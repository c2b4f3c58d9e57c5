"""Follows the compacted accounts topic into a `Directory`, live.

`catch_up()` reads every partition from the beginning to the end offsets seen at start, so a
processor never maps an event with a configuration older than what was published before it
started; `run()` then keeps applying new records as they arrive (no restart needed for a plan
change, a new account, a limit change or an extension). No consumer group: every process reads
the whole topic.

A record the directory cannot apply is refused (logged with its reason, counted in
`metering_config_records_refused_total{reason}`) and reading goes on: the key's last good
version stays in force, and a bad record never blocks start-up. Kafka failures are retried.
Anything else that escapes the loop is a bug: the follower never dies silently. `run()` logs
it, keeps it in `failure` (so `healthy` turns false) and raises it, and the process that runs
the follower stops and exits non-zero (metering/runtime/processor.py, metering/runtime/api.py)
instead of serving a configuration that no longer follows the topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, Counter

from metering.core.directory import Directory, Refusal, RefusalReason
from metering.core.errors import StreamError, TopicMissing
from streams.kafka import translated

log = logging.getLogger(__name__)

KEPT_REFUSALS = 100
"""The newest refusals kept for inspection (`ConfigFollower.refusals`); older ones are in the
log and the metric."""


@dataclass(frozen=True, slots=True)
class ConfigMetrics:
    """What ops watch about a process's configuration: records applied and refused by reason."""

    applied: Counter
    refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConfigMetrics:
        """Register the metrics on `registry`; every reason starts at 0 (so rate() sees the
        first refusal)."""
        metrics = cls(
            applied=Counter(
                "metering_config_records_applied",
                "Accounts-topic records applied to this process's configuration.",
                registry=registry,
            ),
            refused=Counter(
                "metering_config_records_refused",
                "Accounts-topic records refused (the key's previous version stays), by reason.",
                ["reason"],
                registry=registry,
            ),
        )
        for reason in RefusalReason:
            metrics.refused.labels(reason=reason.value)
        return metrics


class ConfigFollower:
    """Keeps a `Directory` in step with the accounts topic."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        directory: Directory,
        metrics: ConfigMetrics | None = None,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self.directory = directory
        self.metrics = metrics or ConfigMetrics.create(CollectorRegistry())
        self.refusals: deque[Refusal] = deque(maxlen=KEPT_REFUSALS)
        """The newest refusals, oldest first."""
        self.failure: BaseException | None = None
        """What stopped `run()`, when something did; None while it follows the topic."""

    @property
    def healthy(self) -> bool:
        """False once `run()` stopped on an unexpected error (the process should turn unready
        and exit: its configuration no longer follows the topic)."""
        return self.failure is None

    async def catch_up(self, timeout_s: float = 30.0) -> int:
        """Read every partition to its current end; returns the records applied.

        Subscribing without a group assigns every partition of the topic, from the beginning
        (auto_offset_reset=earliest, nothing committed). Refused records are skipped.
        """
        self._consumer.subscribe([self._topic])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        applied = 0
        while not self._consumer.assignment():
            if loop.time() > deadline:
                raise TopicMissing([self._topic], ["METERING_ACCOUNTS_TOPIC"])
            applied += await self._poll(200)
        tps = sorted(self._consumer.assignment())
        async with translated(f"read {self._topic}"):
            ends = await self._consumer.end_offsets(tps)
        while True:
            async with translated(f"read {self._topic}"):
                done = all([await self._consumer.position(tp) >= ends[tp] for tp in tps])
            if done:
                if self.refusals:
                    log.warning(
                        "configuration loaded with %d refused records (see the warnings above)",
                        len(self.refusals),
                    )
                return applied
            if loop.time() > deadline:
                raise StreamError(f"could not read {self._topic} to its end in {timeout_s}s")
            applied += await self._poll(500)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply new records until `stop` is set; Kafka errors are retried.

        Any other exception is recorded in `failure`, logged and raised: the caller's process
        must stop rather than serve a frozen configuration."""
        try:
            while not stop.is_set():
                try:
                    await self._poll(500)
                except StreamError as exc:
                    log.warning("following %s: %s (retrying)", self._topic, exc)
                    await asyncio.sleep(1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failure = exc
            log.critical(
                "configuration follower of %s stopped: %r; this process no longer follows "
                "configuration changes and stops",
                self._topic,
                exc,
                exc_info=exc,
            )
            raise

    async def _poll(self, timeout_ms: int) -> int:
        async with translated(f"read {self._topic}"):
            batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        applied = 0
        for records in batches.values():
            for record in records:
                refusal = self.directory.apply_record(record.key, record.value)
                if refusal is None:
                    applied += 1
                else:
                    self.refusals.append(refusal)
                    self.metrics.refused.labels(reason=refusal.reason.value).inc()
        self.metrics.applied.inc(applied)
        return applied
