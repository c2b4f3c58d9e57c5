"""The fault suite, reduced: every case of tests/reliability/cases.py once, at `REDUCED` scale.

Each case streams a known event set, injects its fault mid-stream, and then checks that every
counter equals the truth exactly, that every expected crossing id was published exactly once
for a `read_committed` reader (the publisher's Kafka transactions, ADR 0008) and that every
rejected record reached the dead-letter topic. The full-length run (`deploy/faults`,
docs/reliability.md) uses the same cases at `FULL` scale.
"""

from __future__ import annotations

import pytest

from tests.reliability.cases import CASES, REDUCED

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", list(CASES))
async def test_fault_case_loses_nothing_and_counts_nothing_twice(
    name: str, kafka_bootstrap: str
) -> None:
    result = await CASES[name](kafka_bootstrap, REDUCED, 20261123 + list(CASES).index(name))
    assert result.ok, result.summary()
    if result.verdict is not None:
        assert result.verdict.events > 2000
