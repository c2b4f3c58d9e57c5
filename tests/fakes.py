"""In-memory stores behind the core ports, for the store contract tests (Quix Streams runs its
state tests over every store the same way: tests/integration/state/test_store_contract.py).

They keep the contract the Redis store keeps (positions never move back, the marker is set
once, claims are exclusive, acknowledged entries are gone), so that a test of an engine can
stand on them; time-based expiry (claim TTLs) is not modelled.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from metering.core.ports import OutboxEntry


class MemoryPositions:
    """A `metering.core.ports.PositionStore` in memory."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, str, int], tuple[int, int]] = {}
        self._marker: str | None = None
        self._rebuilding: dict[tuple[str, int], int] = {}

    async def positions(
        self, group: str, topic: str, partitions: Iterable[int]
    ) -> dict[int, tuple[int, int]]:
        found = {p: self._positions.get((group, topic, p)) for p in partitions}
        return {p: v for p, v in found.items() if v is not None}

    async def advance_positions(
        self,
        group: str,
        topic: str,
        positions: Mapping[int, tuple[int, int]],
        *,
        applied_ms: int,
    ) -> None:
        for partition, (offset, watermark) in positions.items():
            current = self._positions.get((group, topic, partition))
            if current is None or offset >= current[0]:
                self._positions[(group, topic, partition)] = (offset, watermark)

    async def store_marker(self) -> str | None:
        return self._marker

    async def marker_and_positions(
        self, group: str, topic: str, partitions: Sequence[int]
    ) -> tuple[str | None, dict[int, int]]:
        found = await self.positions(group, topic, partitions)
        return self._marker, {p: offset for p, (offset, _) in found.items()}

    async def claim_store_marker(self, token: str) -> str:
        if self._marker is None:
            self._marker = token
        return self._marker

    async def mark_rebuilding(self, topic: str, partition: int, until_offset: int) -> None:
        self._rebuilding[(topic, partition)] = until_offset

    async def rebuilding_targets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        found = {p: self._rebuilding.get((topic, p)) for p in partitions}
        return {p: v for p, v in found.items() if v is not None}

    async def finish_rebuilding(self, topic: str, partitions: Sequence[int]) -> None:
        for p in partitions:
            self._rebuilding.pop((topic, p), None)


class MemoryOutboxes:
    """A `metering.core.ports.OutboxStore` in memory; `add` plays the apply step's part."""

    def __init__(self) -> None:
        self._outboxes: dict[str, list[OutboxEntry]] = {}
        self._index: set[str] = set()
        self._claims: dict[int, str] = {}
        self._ids = itertools.count(1)

    def add(self, account: str, fields: dict[str, str]) -> None:
        self._outboxes.setdefault(account, []).append(
            OutboxEntry(f"{next(self._ids)}-0", dict(fields))
        )

    async def index_outboxes(self, accounts: Iterable[str]) -> None:
        self._index.update(accounts)

    async def indexed_outboxes(self) -> list[str]:
        return sorted(self._index)

    async def sweep_outboxes(self) -> list[str]:
        return sorted(account for account, entries in self._outboxes.items() if entries)

    async def claim_publisher_shard(self, shard: int, owner: str, ttl_ms: int) -> bool:
        holder = self._claims.setdefault(shard, owner)
        return holder == owner

    async def release_publisher_shard(self, shard: int, owner: str) -> None:
        if self._claims.get(shard) == owner:
            del self._claims[shard]

    async def read_outbox(self, account: str, count: int = 500) -> list[OutboxEntry]:
        return list(self._outboxes.get(account, [])[:count])

    async def ack_outbox(self, account: str, entry_ids: Sequence[str]) -> int:
        gone = set(entry_ids)
        left = [e for e in self._outboxes.get(account, []) if e.entry_id not in gone]
        if left:
            self._outboxes[account] = left
        else:
            self._outboxes.pop(account, None)
            self._index.discard(account)
        return len(left)
