"""Fixtures for tests that need the real Kafka and Redis of the test stack.

`stack` finds the test stack through tests/stack.py (the one place that does): the addresses
`deploy/test` exports (METERING_TEST_KAFKA_BOOTSTRAP, METERING_TEST_REDIS_URL), or, under a
plain `pytest`, the stack that `deploy/local/stack.sh --profile test up` starts and leaves
running for the next run and for other sessions using it at the same time (the summary says
how to stop it). A test never skips for want of a service: a stack that cannot start is an
error.

Isolation per test: `topic_factory` / `new_topic` create uniquely named topics and delete them
afterwards; `redis_db` gives each test its own, flushed Redis database (1..63, round-robin,
claimed in database 0 so that sessions running at the same time never share one); `redis` is
an async client (bytes in, bytes out) on that database.
A test that uses these fixtures must be marked `@pytest.mark.integration`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Protocol
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from tests.stack import Stack, StackUnavailable, find_stack

REDIS_TEST_DBS = range(1, 64)  # database 0 holds the claims
REDIS_CLAIM_TTL_S = 900  # a claim outlives any test; a crashed session's claims expire
STARTED_STACK = pytest.StashKey[list[str]]()


class TopicFactory(Protocol):
    async def __call__(self, partitions: int = 1) -> str: ...


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> Stack:
    """The test stack (tests/stack.py finds or starts it)."""
    try:
        found, started = find_stack()
    except StackUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    pytestconfig.stash[STARTED_STACK] = started
    return found


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    yield admin
    await admin.close()


@pytest.fixture
async def topic_factory(
    kafka_admin: AIOKafkaAdminClient, request: pytest.FixtureRequest
) -> AsyncIterator[TopicFactory]:
    """``await topic_factory(partitions=3)`` -> name of a new topic, deleted after the test."""
    created: list[str] = []
    stem = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name)[:80]

    async def create(partitions: int = 1) -> str:
        name = f"test.{stem}.{uuid.uuid4().hex[:8]}"
        response = await kafka_admin.create_topics([NewTopic(name, partitions, 1)])
        for topic, code, *_ in response.topic_errors:
            if code:
                raise for_code(code)(f"could not create topic {topic}")
        created.append(name)
        return name

    yield create
    if created:
        await kafka_admin.delete_topics(created)


@pytest.fixture
async def new_topic(topic_factory: TopicFactory) -> str:
    """A new topic with one partition."""
    return await topic_factory()


@pytest.fixture(scope="session")
def _redis_db_numbers() -> Iterator[int]:
    return itertools.cycle(REDIS_TEST_DBS)


@pytest.fixture
async def redis_db(stack: Stack, _redis_db_numbers: Iterator[int]) -> AsyncIterator[int]:
    """A Redis database number of this test's own, flushed before the test."""
    token = uuid.uuid4().hex.encode()
    claims = aioredis.Redis.from_url(_with_db(stack.redis_url, 0))
    try:
        db = await _claim_db(claims, _redis_db_numbers, token)
        client = aioredis.Redis.from_url(_with_db(stack.redis_url, db))
        try:
            await client.flushdb()
        finally:
            await client.aclose()
        yield db
        if await claims.get(_claim_key(db)) == token:
            await claims.delete(_claim_key(db))
    finally:
        await claims.aclose()


def _claim_key(db: int) -> str:
    return f"metering-test:db-claim:{db}"


async def _claim_db(claims: aioredis.Redis, numbers: Iterator[int], token: bytes) -> int:
    """The next database no other test holds (SET NX in database 0); waits up to 60 s."""
    for _ in range(120):
        for _ in REDIS_TEST_DBS:
            db = next(numbers)
            if await claims.set(_claim_key(db), token, nx=True, ex=REDIS_CLAIM_TTL_S):
                return db
        await asyncio.sleep(0.5)
    raise RuntimeError(f"all Redis test databases {REDIS_TEST_DBS} stayed claimed for 60 s")


@pytest.fixture
def redis_url(stack: Stack, redis_db: int) -> str:
    """``redis://host:port/<db>`` of this test's database."""
    return _with_db(stack.redis_url, redis_db)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """Async client on this test's database; replies are bytes (decode_responses=False)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=False)
    yield client
    await client.aclose()


def _with_db(url: str, db: int) -> str:
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    started = terminalreporter.config.stash.get(STARTED_STACK, [])
    if started:
        terminalreporter.write_line(
            f"test stack: started {' and '.join(started)}, left running for the next run; "
            "stop it with `deploy/local/stack.sh --profile test stop`"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reaches the stack must carry the `integration` marker."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "stack" in fixtures and item.get_closest_marker("integration") is None:
            raise pytest.UsageError(f"{item.nodeid} uses the test stack: mark it integration")
