"""The publishers' progress topic: which outbox entries Kafka says were published.

The outbox publisher writes one record per message it publishes, in the same Kafka
transaction as the message (sinks/outbox_publisher.py), to this compacted topic: key
`<kind>:<id>` (the entry's deterministic id), value the account, the outgoing topic and the
outbox entry. A `read_committed` reader therefore sees a key here exactly when the message it
stands for is on its topic. Before publishing a shard, a publisher reads this topic up to its
last stable offset (`catch_up`) and skips every entry whose key it holds: an entry published
before a crash that kept it from deleting the entry in Redis, or one re-decided by a rebuild
after Redis was lost (ADR 0008).
"""

from __future__ import annotations

import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError

from metering.core.errors import StreamError, StreamUnavailable
from metering.core.ports import OutboxEntry
from streams.kafka import translated

CATCH_UP_TIMEOUT_S = 120.0
"""How long reading the progress topic to its end may take before the shard is given up."""


def progress_key(account: str, entry: OutboxEntry) -> str:
    """The key an entry is published under: its kind and deterministic id. An entry without
    an id (none is written so) falls back to its place in the outbox, which still protects
    it across publisher crashes, though not across a rebuild."""
    kind = entry.fields.get("kind") or "crossing"
    entry_id = entry.fields.get("id")
    if entry_id:
        return f"{kind}:{entry_id}"
    return f"{kind}:{account}/{entry.entry_id}"


def progress_value(account: str, topic: str, entry: OutboxEntry) -> bytes:
    """What a progress record says, for people reading the topic (the key is what counts)."""
    return orjson.dumps({"account": account, "topic": topic, "entry": entry.entry_id})


class PublishedIds:
    """The keys of the progress topic, as committed (`read_committed`), kept in memory.

    Memory grows with the number of messages ever published (about 100 bytes each); the
    topic is compacted, so it holds one record per key.
    """

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        """`consumer` is not started, has no group and reads with `read_committed`."""
        self._consumer = consumer
        self._topic = topic
        self._keys: set[str] = set()
        self._partitions: list[TopicPartition] = []
        self._started = False

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def partitions(self) -> int:
        """Partitions of the progress topic (known after the first `catch_up`)."""
        return len(self._partitions)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: set[str]) -> None:
        """Keys whose transaction committed (learned from the commit, before reading them)."""
        self._keys |= keys

    async def partitions_of(self, producer: AIOKafkaProducer) -> set[int]:
        """The progress topic's partitions, as a started producer learns them (it waits for
        the metadata of a topic just created); a missing topic is named."""
        try:
            async with translated(f"read the partitions of {self._topic}"):
                return set(await producer.partitions_for(self._topic))
        except StreamError as exc:
            if isinstance(exc.__cause__, UnknownTopicOrPartitionError):
                raise StreamError(
                    f"the publisher progress topic {self._topic!r} does not exist: create it "
                    "with `metering topics create` (METERING_PUBLISHER_PROGRESS_TOPIC)"
                ) from exc
            raise

    async def _start(self, parts: set[int]) -> None:
        async with translated(f"start reading {self._topic}"):
            await self._consumer.start()
            self._started = True
        self._partitions = [TopicPartition(self._topic, p) for p in sorted(parts)]
        self._consumer.assign(self._partitions)
        async with translated(f"read {self._topic} from the beginning"):
            await self._consumer.seek_to_beginning(*self._partitions)

    async def catch_up(self, producer: AIOKafkaProducer) -> int:
        """Read every committed record up to the topic's last stable offset; returns how many
        were read. Called after taking a shard over with `producer` (it has fenced the previous
        holder, so that one's last transaction is committed or aborted by now)."""
        if not self._started:
            await self._start(await self.partitions_of(producer))
        async with translated(f"read {self._topic}"):
            ends = await self._consumer.end_offsets(self._partitions)
            read = 0
            deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
            while True:
                behind = [
                    tp for tp in self._partitions if await self._consumer.position(tp) < ends[tp]
                ]
                if not behind:
                    return read
                if time.monotonic() > deadline:
                    raise StreamUnavailable(
                        f"reading {self._topic} to its end took over {CATCH_UP_TIMEOUT_S:.0f} s"
                    )
                batches = await self._consumer.getmany(*behind, timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        if record.key is not None:
                            self._keys.add(bytes(record.key).decode())
                            read += 1

    async def stop(self) -> None:
        """Close the consumer (also when it never started: it holds a client from birth)."""
        self._started = False
        await self._consumer.stop()
