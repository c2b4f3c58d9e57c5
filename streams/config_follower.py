"""Follows the compacted accounts topic into a `Directory`, live.

`catch_up()` reads every partition from the beginning to the end offsets seen at start, so a
processor never maps an event with a configuration older than what was published before it
started; `run()` then keeps applying new records as they arrive (no restart needed for a plan
change, a new account, a limit change or an extension). No consumer group: every process reads
the whole topic.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from metering.core.directory import Directory, Refusal
from streams.errors import StreamError
from streams.kafka import translated

log = logging.getLogger(__name__)


class ConfigFollower:
    """Keeps a `Directory` in step with the accounts topic."""

    def __init__(self, consumer: AIOKafkaConsumer, topic: str, directory: Directory) -> None:
        self._consumer = consumer
        self._topic = topic
        self.directory = directory
        self.refusals: list[Refusal] = []

    async def catch_up(self, timeout_s: float = 30.0) -> int:
        """Read every partition to its current end; returns the records applied.

        Subscribing without a group assigns every partition of the topic, from the beginning
        (auto_offset_reset=earliest, nothing committed).
        """
        self._consumer.subscribe([self._topic])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        applied = 0
        while not self._consumer.assignment():
            if loop.time() > deadline:
                raise StreamError(f"topic {self._topic} not found (run `metering topics create`)")
            applied += await self._poll(200)
        tps = sorted(self._consumer.assignment())
        async with translated(f"read {self._topic}"):
            ends = await self._consumer.end_offsets(tps)
        while True:
            async with translated(f"read {self._topic}"):
                done = all([await self._consumer.position(tp) >= ends[tp] for tp in tps])
            if done:
                return applied
            if loop.time() > deadline:
                raise StreamError(f"could not read {self._topic} to its end in {timeout_s}s")
            applied += await self._poll(500)

    async def run(self, stop: asyncio.Event) -> None:
        """Apply new records until `stop` is set."""
        while not stop.is_set():
            try:
                await self._poll(500)
            except StreamError as exc:
                log.warning("following %s: %s (retrying)", self._topic, exc)
                await asyncio.sleep(1)

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
        return applied
