"""Fixtures of the API tests: the app over real Redis (the test stack), without Kafka.

`api` builds an `ApiContext` on this test's own Redis database with the shipped example plans
and a few accounts in its `Directory`; configuration changes are recorded by `Recorder`
instead of going to Kafka (tests/api/test_end_to_end.py covers the Kafka path). Requests go
through httpx's ASGITransport: no sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from metering.api.app import create_app
from metering.api.auth import KeyRing, Scope
from metering.api.context import ApiConfig, ApiContext
from metering.core.account_codec import account_from_json
from metering.core.accounts import Account
from metering.core.directory import Directory
from metering.core.plan_loading import example_plans
from metering.core.rfc3339 import parse_ms
from metering.state.redis_store import RedisStateStore

NOW = parse_ms("2026-11-15T12:00:00Z")
"""The API's clock in these tests: mid-November (periods are computed from it)."""

ACCOUNTS = [
    {"id": "acton", "plan": "acton-active-contacts", "limits": {"active_contacts": 5}},
    {"id": "acton-big", "plan": "acton-active-contacts"},
    {"id": "ac", "plan": "activecampaign-lite", "limits": {"contacts": 10}},
    {"id": "apsis", "plan": "apsis-essential", "limits": {"email_sendings": 100}},
    {"id": "actito", "plan": "actito-standard", "contract_date": "2026-03-01"},
    {"id": "clerk", "plan": "clerk"},
]


@dataclass
class Recorder:
    """Stands in for ConfigWriter and the events producer: remembers what was published."""

    accounts: list[Account] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    events: list[tuple[str, bytes]] = field(default_factory=list)

    async def put_account(self, account: Account) -> None:
        self.accounts.append(account)

    async def delete_account(self, account_id: str) -> None:
        self.deleted.append(account_id)

    async def publish(self, account: str, value: bytes) -> None:
        self.events.append((account, value))


@dataclass
class Api:
    ctx: ApiContext
    client: httpx.AsyncClient
    recorder: Recorder
    admin_token: str
    tokens: dict[str, str]
    """Account id -> token of an account-scoped key."""

    def as_admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def as_account(self, account: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[account]}"}


def directory_with_examples() -> Directory:
    directory = Directory()
    for plan in example_plans().values():
        directory.put_plan(plan)
    for doc in ACCOUNTS:
        directory.put_account(account_from_json(doc))
    return directory


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.for_api(redis_url)
    yield s
    await s.close()


async def build_api(
    store: RedisStateStore, config: ApiConfig | None = None, now_ms: int = NOW
) -> tuple[ApiContext, Recorder, str, dict[str, str]]:
    recorder = Recorder()
    keys = KeyRing(store, cache_s=0.0)
    ctx = ApiContext(
        store=store,
        directory=directory_with_examples(),
        config_publisher=recorder,
        events=recorder,
        keys=keys,
        config=config or ApiConfig(rate_per_s=10_000, burst=10_000),
        clock_ms=lambda: now_ms,
    )
    # What a processor does when it first uses a store: without the marker, every read of
    # metered state is refused (503 store_not_initialised).
    await store.claim_store_marker("tests-api")
    admin, _ = await keys.create(Scope.ADMIN)
    tokens = {}
    for doc in ACCOUNTS:
        tokens[doc["id"]], _ = await keys.create(Scope.ACCOUNT, doc["id"])
    return ctx, recorder, admin, tokens


@pytest.fixture
async def api(store: RedisStateStore) -> AsyncIterator[Api]:
    ctx, recorder, admin, tokens = await build_api(store)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield Api(ctx, client, recorder, admin, tokens)
