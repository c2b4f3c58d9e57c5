"""The account partitioner is Kafka's: murmur2 as the Java client computes it, and aiokafka's.

Why: an account's usage events and its top-ups must land on one partition whichever client
wrote them (docs/asyncapi.yaml, "Partitioning"). The vectors are those of Kafka's own
`UtilsTest.testMurmur2` (Java's signed results)."""

from __future__ import annotations

import ctypes

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from metering.core.partitioning import (
    ACCOUNT_PARTITIONER,
    account_partition,
    murmur2,
    partition_of,
)

JAVA = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java"), JAVA)
def test_murmur2_gives_the_java_clients_values(key: bytes, java: int) -> None:
    assert ctypes.c_int32(murmur2(key)).value == java


@given(st.binary(max_size=300), st.integers(1, 200))
def test_the_partition_is_aiokafkas_default(key: bytes, partitions: int) -> None:
    assert murmur2(key) == aiokafka_murmur2(key) & 0xFFFFFFFF
    every = list(range(partitions))
    expected = DefaultPartitioner()(key, every, every)
    assert partition_of(key, partitions) == expected
    assert ACCOUNT_PARTITIONER(key, every, every[:1]) == expected  # availability does not matter


def test_an_account_is_placed_by_its_utf8_bytes() -> None:
    assert account_partition("kundé-7", 12) == partition_of("kundé-7".encode(), 12)


def test_a_record_without_key_or_a_topic_without_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="keyed by account"):
        ACCOUNT_PARTITIONER(None, [0, 1], [0, 1])
    with pytest.raises(ValueError, match="at least one partition"):
        partition_of(b"acme", 0)
