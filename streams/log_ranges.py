"""The events topic's partitions and offset ranges, read for the API's freshness answers.

The API says how fresh an account's counts are by comparing what the processor applied
(Redis) with what the events topic holds (here). Which partition an account's events go to
is Kafka's default partitioner: murmur2 of the record key (the account id), positive, modulo
the topic's partition count: what the API's own producer, the SDK and `metering produce` use
(aiokafka's `DefaultPartitioner`, the Java client's for keyed records).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from metering.core.errors import StreamError
from metering.core.freshness import LogRange
from streams.kafka import translated


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` among `partitions`."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class KafkaLogRanges:
    """Partition count and offset ranges of one topic.

    The count comes from `producer`'s metadata: the API's own producer, so the partition
    named for an account is the one that producer sends the account's top-ups to (its
    metadata is refreshed every `metadata.max.age.ms`, 5 minutes, and when a send fails).
    The offsets come from `consumer`, outside any group (it never fetches records).
    """

    def __init__(self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str) -> None:
        self._producer = producer
        self._consumer = consumer
        self._topic = topic

    async def partition_count(self) -> int:
        """Partitions of the topic; `StreamError` when the topic does not exist."""
        async with translated(f"read the partitions of {self._topic}"):
            found = await self._producer.partitions_for(self._topic)
        if not found:
            raise StreamError(f"topic {self._topic} does not exist")
        return len(found)

    async def partition_of(self, account: str) -> int:
        """The partition of `account`'s events (records keyed by the account id)."""
        return partition_for(account, await self.partition_count())

    async def ranges(self, partitions: Sequence[int] | None = None) -> dict[int, LogRange]:
        """[first offset held, next offset to write) of `partitions` (all when None)."""
        parts = range(await self.partition_count()) if partitions is None else partitions
        tps = [TopicPartition(self._topic, p) for p in parts]
        async with translated(f"read the offsets of {self._topic}"):
            starts = await self._consumer.beginning_offsets(tps)
            ends = await self._consumer.end_offsets(tps)
        return {tp.partition: LogRange(int(starts[tp]), int(ends[tp])) for tp in tps}
