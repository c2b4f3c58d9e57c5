"""The producer SDK: local validation, ids, and delivery to a real Kafka."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from metering.client import SyncUsageProducer, UsageProducer
from metering.client.producer import event_id
from metering.core.errors import EventRejected, RejectReason
from metering.core.events import EventType, decode_event


def test_an_idempotency_key_gives_the_same_id_every_time() -> None:
    assert event_id("invoice-42/line-3") == event_id("invoice-42/line-3")
    assert event_id("invoice-42/line-3") != event_id("invoice-42/line-4")
    assert event_id() != event_id()


def test_a_bad_event_fails_locally_naming_the_field() -> None:
    usage = UsageProducer.connect("127.0.0.1:1", source="tests")  # never started: no I/O
    with pytest.raises(EventRejected) as caught:
        usage.build(EventType.SMS_SENT, "acme", contact="c1", quantity=0)
    assert caught.value.reason in (RejectReason.INVALID_VALUE, RejectReason.NEGATIVE_QUANTITY)
    assert caught.value.field == "data.quantity"
    with pytest.raises(EventRejected) as caught:
        usage.build(EventType.EMAIL_SENT, "acme", contact="c1", kind="fax")
    assert caught.value.field == "data.kind"
    with pytest.raises(EventRejected) as caught:
        usage.build(EventType.EMAIL_SENT, "ac me", contact="c1", kind="marketing")
    assert caught.value.field == "subject"
    with pytest.raises(EventRejected) as caught:
        usage.build(EventType.RESOURCE_ADDED, "acme", resource="robot", resource_id="r1")
    assert caught.value.field == "data.resource"
    built = usage.build(EventType.RESOURCE_ADDED, "acme", resource="user", resource_id="alice")
    assert (built.resource, built.resource_id) == ("user", "alice")
    held = usage.build(EventType.SMS_SENT, "acme", contact="c1", hold="4f2a")
    assert held.hold == "4f2a"
    with pytest.raises(EventRejected) as caught:
        usage.build(EventType.SMS_SENT, "acme", contact="c1", hold="")
    assert caught.value.field == "holdid"


async def read_all(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        values: list[bytes] = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records)
            if len(values) >= expect:
                break
        return values
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_every_helper_delivers_an_event_the_processor_accepts(
    kafka_bootstrap: str, new_topic: str
) -> None:
    async with UsageProducer.connect(kafka_bootstrap, source="sdk-test", topic=new_topic) as usage:
        receipts = [
            await usage.email_sent("acme", contact="c1", kind="transactional"),
            await usage.email_opened("acme", contact="c1", with_recommendations=True),
            await usage.sms_sent("acme", contact="c1", segments=2),
            await usage.sms_credits_added("acme", amount=500),
            await usage.search_viewed("acme", surface="page"),
            await usage.recommendation_viewed("acme", elements=3),
            await usage.contact_added("acme", contact="c2", origin="form"),
            await usage.contact_unsubscribed("acme", contact="c2"),
            await usage.contact_deleted("acme", contact="c2"),
            await usage.contact_suppressed("acme", contact="c3", reason="hard_bounce"),
            await usage.campaign_interaction("acme", contact="c1", channel="print"),
        ]
        batch = [usage.build("search.viewed", "acme", surface="instant") for _ in range(50)]
        receipts += await usage.send_many(batch)
    assert [r.offset for r in receipts] == list(range(61))
    values = await read_all(kafka_bootstrap, new_topic, 61)
    events = [decode_event(v, now_ms=2**62) for v in values]
    assert [e.type.value for e in events[:3]] == ["email.sent", "email.opened", "sms.sent"]
    assert events[2].quantity == 2
    assert events[5].quantity == 3
    assert {e.account for e in events} == {"acme"}
    assert len({e.id for e in events}) == 61
    assert orjson.loads(values[0])["source"] == "sdk-test"


@pytest.mark.integration
async def test_the_sync_wrapper_blocks_until_delivered(
    kafka_bootstrap: str, new_topic: str
) -> None:
    with SyncUsageProducer.connect(kafka_bootstrap, source="script", topic=new_topic) as usage:
        first = usage.email_sent("acme", contact="c1", idempotency_key="mail-1")
        again = usage.email_sent("acme", contact="c1", idempotency_key="mail-1")
    assert first.event_id == again.event_id  # a re-send carries the same id: counted once
    assert (first.offset, again.offset) == (0, 1)
