"""Reminders end to end (issue 16): a real processor decides the crossing, `metering remind
--as-of` (the scheduler of the closer process, with its clock moved) sends the reminders.

ActiveCampaign (seed 002): "Als je bijna je contactlimiet nadert, sturen we je elke 15 dagen
een e-mail totdat je je account hebt geüpgraded": the `approaching` threshold (4/5 of the
contact limit) reminds every 15 days while reached, and stops after an upgrade.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from metering.core.account_codec import account_from_json
from metering.core.periods import DAY_MS
from metering.core.thresholds import crossing_id, reminder_id
from metering.runtime.closer import closer_app
from metering.settings import Settings
from metering.state import keys
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from tests.integration.harness import (
    REPO,
    ProcessorProcess,
    TopicFactory,
    caught_up,
    encoded,
    env_of,
    event,
    make_settings,
    produce,
    read_topic,
    wait_until,
)
from tests.unit.core.test_event_schemas import validator

pytestmark = pytest.mark.integration

PLAN = REPO / "metering" / "core" / "plans_examples" / "activecampaign.toml"
ACCOUNT = "ac-remind"
LIMIT = 10
"""`approaching` is 4/5 of it: 8 contacts."""


async def put_config(settings: Settings, limit: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        await writer.put_plan("activecampaign-lite", PLAN.read_text(), PLAN.name)
        doc = {"id": ACCOUNT, "plan": "activecampaign-lite", "limits": {"contacts": limit}}
        await writer.put_account(account_from_json(doc))
    finally:
        await producer.stop()


async def remind(settings: Settings, as_of_ms: int) -> str:
    """`metering remind --as-of T` as a user runs it; returns its output line."""
    from metering.core.rfc3339 import format_ms  # noqa: PLC0415

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metering.cli", "remind", "--as-of", format_ms(as_of_ms)],
        env=env_of(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_reminders_every_15_days_while_reached_then_none_after_an_upgrade(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    base = await make_settings(kafka_bootstrap, redis_url, topic_factory)
    settings = replace(base, reminders_topic=await topic_factory(1), reminder_interval_s=3600)
    await put_config(settings, LIMIT)
    store = RedisStateStore.from_url(redis_url)
    processor = ProcessorProcess.start(settings, tmp_path / "processor.log")
    try:
        await processor.ready()
        contacts = [
            event(ACCOUNT, "contact.added", contact=f"c{i}", origin="api") for i in range(9)
        ]
        await produce(settings, encoded(contacts))
        await wait_until(lambda: caught_up(settings, store), what="processor caught up")
        crossing = crossing_id(ACCOUNT, "contacts", f"L{LIMIT}", "approaching")
        mark = keys.crossing_mark_key(ACCOUNT, "contacts", f"L{LIMIT}", "approaching")
        crossed = await store._client.get(mark)
        assert crossed is not None
        crossed_at = int(crossed)

        # 88 days above the limit, the closer's scheduler waking once a day (on day 30 a
        # second one too): reminders 1..5 on days 15, 30, 45, 60, 75, each once.
        now = [crossed_at]
        sent_on = []
        async with (
            closer_app(settings, lambda: now[0]) as app,
            closer_app(settings, lambda: now[0]) as other,
        ):
            for day in range(1, 89):
                now[0] = crossed_at + day * DAY_MS
                if day == 30:  # two at once: one sends, the other finds it sent
                    reports = await asyncio.gather(
                        app.reminders.remind_pass(), other.reminders.remind_pass()
                    )
                    reports[0].add(reports[1])
                    report = reports[0]
                else:
                    report = await app.reminders.remind_pass()
                sent_on += [day] * report.sent
        assert sent_on == [15, 30, 45, 60, 75]

        reminders = await read_topic(settings, settings.reminders_topic, expect=5)
        bodies = [orjson.loads(r.value) for r in reminders]
        assert [b["number"] for b in bodies] == [1, 2, 3, 4, 5]
        schema = validator("reminder.v1.json")  # the contract of docs/asyncapi.yaml
        for body in bodies:
            schema.validate(body)
        assert [b["id"] for b in bodies] == [reminder_id(crossing, n) for n in range(1, 6)]
        assert [dict(r.headers)["id"].decode() for r in reminders] == [b["id"] for b in bodies]
        assert {r.key for r in reminders} == {ACCOUNT.encode()}
        first = bodies[0]
        assert first["type"] == "threshold.reminder"
        assert first["crossing_id"] == crossing
        assert (first["meter"], first["threshold"], first["period"]) == (
            "contacts",
            "approaching",
            None,
        )
        assert (first["used"], first["limit"], first["every_days"]) == (9, LIMIT, 15)

        # Below the threshold (7 of 10): reminder 6 (day 90) is held, not sent.
        gone = [event(ACCOUNT, "contact.deleted", contact=f"c{i}") for i in range(2)]
        await produce(settings, encoded(gone))
        await wait_until(lambda: caught_up(settings, store), what="deletions applied")
        assert (await remind(settings, crossed_at + 91 * DAY_MS)).startswith(
            "0 reminders sent (1 crossings checked, 1 due but below"
        )

        # Back at 8 of 10: the held reminder goes out (number 6), once.
        await produce(
            settings, encoded([event(ACCOUNT, "contact.added", contact="c0", origin="api")])
        )
        await wait_until(lambda: caught_up(settings, store), what="re-add applied")
        assert (await remind(settings, crossed_at + 92 * DAY_MS)).startswith("1 reminders sent")
        assert (await remind(settings, crossed_at + 93 * DAY_MS)).startswith("0 reminders sent")

        # The upgrade (limit 100, through the configuration topic): no reminder any more.
        await put_config(settings, 100)
        assert (await remind(settings, crossed_at + 200 * DAY_MS)).startswith("0 reminders sent")

        everything = await read_topic(settings, settings.reminders_topic, expect=7, timeout_s=5)
        numbers = [orjson.loads(r.value)["number"] for r in everything]
        assert numbers == [1, 2, 3, 4, 5, 6]
        assert orjson.loads(everything[-1].value)["used"] == 8
    finally:
        processor.stop_if_running()
        await store.close()
