"""Publishes plans, accounts and API keys to the compacted accounts topic (CLI `plans apply`,
`api-keys`, admin API).

Records are keyed `plan:<id>` / `account:<id>` / `apikey:<id>` (see metering/core/directory.py);
compaction keeps the newest per key, so the topic is the full, replayable configuration. A key's
record carries the digest of its token, never the token (metering.core.api_keys).
"""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaProducer

from metering.core.account_codec import account_to_json
from metering.core.accounts import Account
from metering.core.api_keys import KeyRecord, topic_record
from metering.core.directory import ACCOUNT_PREFIX, PLAN_PREFIX
from streams.kafka import translated


class ConfigWriter:
    """Writes configuration records and waits for the broker's acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def put_plan(self, plan_id: str, toml_text: str, source: str) -> None:
        """Publish a plan file's text (validated by the caller with `parse_plan`)."""
        value = orjson.dumps({"source": source, "toml": toml_text})
        await self._send(f"{PLAN_PREFIX}{plan_id}", value)

    async def put_account(self, account: Account) -> None:
        """Publish an account's configuration (validated by the caller)."""
        await self._send(f"{ACCOUNT_PREFIX}{account.id}", orjson.dumps(account_to_json(account)))

    async def put_accounts(self, accounts: list[Account]) -> None:
        """Publish many accounts, waiting once for all acknowledgements (bulk loads)."""
        async with translated(f"write {len(accounts)} accounts to {self._topic}"):
            futures = [
                await self._producer.send(
                    self._topic,
                    value=orjson.dumps(account_to_json(account)),
                    key=f"{ACCOUNT_PREFIX}{account.id}".encode(),
                )
                for account in accounts
            ]
            await asyncio.gather(*futures)

    async def delete_account(self, account_id: str) -> None:
        """Tombstone: compaction removes the account."""
        await self._send(f"{ACCOUNT_PREFIX}{account_id}", None)

    async def put_api_key(self, digest: str, record: KeyRecord) -> None:
        """Publish an API key's record (created, or revoked with `revoked_ms`)."""
        key, value = topic_record(digest, record)
        await self._send(key.decode(), value)

    async def _send(self, key: str, value: bytes | None) -> None:
        async with translated(f"write {key} to {self._topic}"):
            await self._producer.send_and_wait(self._topic, value=value, key=key.encode())
