"""The configuration follower against the real Kafka of the test stack (issue 14, item 3).

Hostile records (deep TOML, `"toml": 5`, non-JSON, a near-megabyte record, a bad contract
date, tombstones) are produced with a plain producer onto an accounts topic, before and after
good ones. A follower catching up, a running follower and a processor started afterwards all
apply the good records and refuse the bad ones with a logged reason and a metric; the last
good version of a key stays in force. A follower that stops on an unexpected error stops its
processor, which then ends with an error instead of metering with a frozen configuration.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from metering.api.context import ApiConfig
from metering.core.directory import Directory
from metering.core.errors import StreamError
from metering.runtime.api import running
from metering.runtime.processor import run_until_stopped
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from streams.config_follower import ConfigFollower, ConfigMetrics
from streams.kafka import new_consumer
from tests.integration.harness import (
    PLAN_FILE,
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    produce,
    wait_until,
)

pytestmark = pytest.mark.integration

PLAN = b"plan:it-plan"
GOOD_PLAN = orjson.dumps({"source": "it-plan.toml", "toml": PLAN_FILE.read_text()})


def account(account_id: str, **fields: object) -> tuple[bytes, bytes]:
    return f"account:{account_id}".encode(), orjson.dumps(
        {"id": account_id, "plan": "it-plan", **fields}
    )


HOSTILE: list[tuple[bytes | None, bytes | None]] = [
    (PLAN, orjson.dumps({"source": "deep.toml", "toml": "a = " + "[" * 5000 + "]" * 5000})),
    (PLAN, orjson.dumps({"source": "five.toml", "toml": 5})),
    (PLAN, b"\xff this is not JSON"),
    (PLAN, orjson.dumps({"source": "huge.toml", "toml": "# " + "x" * 900_000 + "\nbroken = ["})),
    (b"account:acme", b'{"id": "acme", "plan": '),
    account("acme", contract_date="2026-W01-1"),
    (b"not-a-config-key", b"{}"),
]
"""Each refused; counted as invalid_plan x3, not_json x2, invalid_account, bad_key."""
EXPECTED_REFUSALS = {"invalid_plan": 3, "not_json": 2, "invalid_account": 1, "bad_key": 1}


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    return await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=1)


async def send(settings: Settings, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce raw records to the accounts topic, in order, as any client could."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.accounts_topic, key=key, value=value)
    finally:
        await producer.stop()


class Following:
    """A follower of the settings' accounts topic with its own registry."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.consumer = new_consumer(settings, group_id=None, client_id=f"t-{uuid.uuid4().hex[:6]}")
        self.follower = ConfigFollower(
            self.consumer, settings.accounts_topic, Directory(), ConfigMetrics.create(self.registry)
        )

    def refused(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "metering_config_records_refused_total", {"reason": reason}
        )
        assert value is not None
        return value


@pytest.fixture
async def following(settings: Settings) -> AsyncIterator[Following]:
    f = Following(settings)
    await f.consumer.start()
    try:
        yield f
    finally:
        await f.consumer.stop()


async def test_catch_up_refuses_hostile_records_and_applies_the_good_ones(
    settings: Settings, following: Following, caplog: pytest.LogCaptureFixture
) -> None:
    await send(settings, [(PLAN, GOOD_PLAN), account("acme"), *HOSTILE, account("newco")])
    with caplog.at_level(logging.WARNING):
        applied = await following.follower.catch_up()
    directory = following.follower.directory
    assert applied == 3
    assert directory.lookup("newco") is not None, "a record after the bad ones must apply"
    acme = directory.account("acme")
    assert acme is not None
    assert acme.contract_date is None, "the refused ISO week date must not replace acme"
    plan = directory.plan("it-plan")
    assert plan is not None
    assert plan.has_meter("emails"), "the last good plan stays in force"
    for reason, count in EXPECTED_REFUSALS.items():
        assert following.refused(reason) == count, reason
    assert following.registry.get_sample_value("metering_config_records_applied_total") == 3
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("plan:it-plan: invalid_plan: " in m and "nested too deeply" in m for m in logged)
    assert any("toml: must be a string" in m for m in logged)
    assert any("2026-W01-1" in m for m in logged)
    assert len(following.follower.refusals) == sum(EXPECTED_REFUSALS.values())


async def test_a_running_follower_lives_through_hostile_records(
    settings: Settings, following: Following
) -> None:
    await send(settings, [(PLAN, GOOD_PLAN)])
    await following.follower.catch_up()
    stop = asyncio.Event()
    task = asyncio.create_task(following.follower.run(stop))
    try:
        await send(settings, [*HOSTILE, (PLAN, None), (PLAN, GOOD_PLAN), account("late")])

        async def seen() -> bool:
            assert not task.done(), task
            return following.follower.directory.lookup("late") is not None

        await wait_until(
            seen, timeout_s=60, what="the follower to apply the account after the bad records"
        )
        assert following.follower.healthy
        assert following.refused("invalid_plan") == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert following.follower.failure is None


async def test_a_processor_started_after_bad_records_meters_the_good_account(
    settings: Settings,
) -> None:
    """Start-up is not blocked: tombstones and corrected records are not even needed."""
    await send(settings, [(PLAN, GOOD_PLAN), *HOSTILE, account("acme")])
    store = RedisStateStore.from_url(settings.redis_url)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=registry))
    try:
        await produce(
            settings, encoded([event("acme", "email.sent", contact="c1", kind="marketing")])
        )
        await wait_until(lambda: caught_up(settings, store), what="the processor to catch up")
        assert registry.get_sample_value("metering_events_applied_total") == 1
        assert (
            registry.get_sample_value(
                "metering_events_rejected_total", {"reason": "unknown_account"}
            )
            == 0
        )
        refused = registry.get_sample_value(
            "metering_config_records_refused_total", {"reason": "invalid_plan"}
        )
        assert refused == 3
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await store.close()


async def test_a_follower_that_fails_stops_its_processor_with_an_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in applying a record (simulated: the directory raises) must not leave a processor
    metering with a frozen configuration: the follower logs it, and the processor stops and
    reports it (the `metering processor` command then exits non-zero)."""
    await send(settings, [(PLAN, GOOD_PLAN), account("acme")])
    original = Directory.apply_record

    def apply_record(self: Directory, key: bytes | None, value: bytes | None) -> object:
        if key == b"account:boom":
            raise RuntimeError("a bug in the apply path")
        return original(self, key, value)

    monkeypatch.setattr(Directory, "apply_record", apply_record)
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop, registry=CollectorRegistry()))
    store = RedisStateStore.from_url(settings.redis_url)
    try:
        await produce(
            settings, encoded([event("acme", "email.sent", contact="c1", kind="marketing")])
        )
        await wait_until(lambda: caught_up(settings, store), what="the processor to start")
        await send(settings, [account("boom")])
        with pytest.raises(
            StreamError, match=r"configuration follower stopped.*a bug in the apply path"
        ):
            await asyncio.wait_for(task, 60)
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        await store.close()
    assert any(
        r.levelname == "CRITICAL" and "configuration follower" in r.getMessage()
        for r in caplog.records
    )


async def test_the_api_counts_refusals_and_reports_a_failed_follower(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API process follows the same topic: its registry counts refusals, and a follower
    failure reaches `on_follower_failure` (`metering api` then shuts down and exits non-zero)."""
    await send(settings, [(PLAN, GOOD_PLAN), *HOSTILE, account("acme")])
    original = Directory.apply_record

    def apply_record(self: Directory, key: bytes | None, value: bytes | None) -> object:
        if key == b"account:boom":
            raise RuntimeError("a bug in the apply path")
        return original(self, key, value)

    monkeypatch.setattr(Directory, "apply_record", apply_record)
    registry = CollectorRegistry()
    failures: list[BaseException] = []
    async with running(
        settings, ApiConfig(), registry=registry, on_follower_failure=failures.append
    ) as ctx:
        assert ctx.directory.lookup("acme") is not None
        refused = registry.get_sample_value(
            "metering_config_records_refused_total", {"reason": "invalid_plan"}
        )
        assert refused == 3
        await send(settings, [account("boom")])

        async def reported() -> bool:
            return bool(failures)

        await wait_until(reported, timeout_s=60, what="the follower failure to be reported")
    assert "a bug in the apply path" in repr(failures[0])
