"""Which partition an account's records go to: Kafka's own rule, murmur2 of the key.

Why it is written down here: the processor keeps an account's order (and its fence) per
partition, so an account's usage events, its top-ups and its API writes must land on the same
partition. Kafka's Java client, aiokafka's default partitioner and kcat with
`-X partitioner=murmur2_random` all place a keyed record on
`(murmur2(key) & 0x7fffffff) % partitions`; kcat's *default* (`consistent_random`, CRC32) does
not, nor does librdkafka's. The SDK and the API's producer pass `ACCOUNT_PARTITIONER`
explicitly, so a change of a library default cannot move an account; docs/asyncapi.yaml and
README tell other producers which partitioner to set.

Pure Python (no Kafka library): `metering.core` imports none, and a tool that only needs to
know where an account lives should not need one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) as an unsigned 32-bit
    value; Java's signed int has the same bits."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest >= 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java client gives a record keyed `key` on a topic of
    `partitions` partitions (its `toPositive(murmur2(key)) % partitions`)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def account_partition(account: str, partitions: int) -> int:
    """The partition of `account`'s records (the key is the account id, UTF-8)."""
    return partition_of(account.encode(), partitions)


class AccountPartitioner:
    """An aiokafka `partitioner`: murmur2 of the key, like Kafka's Java client.

    A record without a key is refused: every record our producers write is keyed by account,
    so a missing key is a bug that would put the record on an arbitrary partition."""

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            raise ValueError("metering records are keyed by account: this one has no key")
        return all_partitions[partition_of(key, len(all_partitions))]


ACCOUNT_PARTITIONER: Final = AccountPartitioner()
"""The one partitioner of the SDK and the API's producer (see the module docstring)."""
