"""The producer SDK: local validation, ids, one default per field, delivery to a real Kafka."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from metering.client import DeliveryError, SyncUsageProducer, UsageProducer
from metering.client.defaults import FIELD_DEFAULTS
from metering.client.helpers import EventHelpers
from metering.client.producer import event_id
from metering.core.errors import EventRejected, RejectReason
from metering.core.events import DATA_FIELDS, EventType, UsageEvent, decode_event


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


def test_build_fills_each_missing_field_from_the_one_default_table() -> None:
    usage = UsageProducer.connect("127.0.0.1:1", source="tests")
    assert usage.build("email.sent", "acme", contact="c1").kind == "marketing"
    assert usage.build("email.sent", "acme", contact="c1", kind=None).kind == "marketing"
    assert usage.build("email.sent", "acme", contact="c1", kind="transactional").kind == (
        "transactional"
    )
    assert usage.build("search.viewed", "acme").surface == "instant"
    assert usage.build("contact.added", "acme", contact="c1").origin == "api"
    assert usage.build("contact.suppressed", "acme", contact="c1").reason == "opted_out"
    with pytest.raises(EventRejected) as caught:  # required and without a default
        usage.build(EventType.CAMPAIGN_INTERACTION, "acme", contact="c1")
    assert caught.value.field == "data.channel"
    for event_type, defaults in FIELD_DEFAULTS.items():  # every default names a real field
        assert set(defaults) <= {spec.name for spec in DATA_FIELDS[event_type]}


class Built(EventHelpers[UsageEvent]):
    """The helpers over a never-started producer's build(), emitting nothing."""

    def __init__(self) -> None:
        self.producer = UsageProducer.connect("127.0.0.1:1", source="tests")

    def build(self, event_type: EventType | str, account: str, **fields: Any) -> UsageEvent:
        return self.producer.build(event_type, account, **fields)

    def emit(self, event: UsageEvent) -> UsageEvent:
        return event


def test_every_helper_takes_the_options_of_every_event() -> None:
    helpers = Built()
    held = helpers.sms_sent("acme", contact="c1", hold="h-1", idempotency_key="k", time_ms=5000)
    assert (held.hold, held.id, held.time_ms) == ("h-1", event_id("k"), 5000)
    assert helpers.email_sent("acme", contact="c1").kind == "marketing"


def test_emit_before_start_says_so() -> None:
    usage = UsageProducer.connect("127.0.0.1:1", source="tests")
    with pytest.raises(DeliveryError, match="not started"):
        usage.emit(usage.build("search.viewed", "acme"))


async def read_all(bootstrap: str, topic: str, expect: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        values: list[bytes] = []
        for _ in range(100):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(r.value for r in records)
            if len(values) >= expect:
                break
        # a little longer: anything beyond `expect` would be a duplicate
        for records in (await consumer.getmany(timeout_ms=300)).values():
            values.extend(r.value for r in records)
        return values
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_every_helper_delivers_an_event_the_processor_accepts(
    kafka_bootstrap: str, new_topic: str
) -> None:
    async with UsageProducer.connect(kafka_bootstrap, source="sdk-test", topic=new_topic) as usage:
        pending = [
            usage.email_sent("acme", contact="c1", kind="transactional"),
            usage.email_opened("acme", contact="c1", with_recommendations=True),
            usage.sms_sent("acme", contact="c1", segments=2),
            usage.sms_credits_added("acme", amount=500),
            usage.search_viewed("acme", surface="page"),
            usage.recommendation_viewed("acme", elements=3),
            usage.contact_added("acme", contact="c2", origin="form"),
            usage.contact_unsubscribed("acme", contact="c2"),
            usage.contact_deleted("acme", contact="c2"),
            usage.contact_suppressed("acme", contact="c3", reason="hard_bounce"),
            usage.campaign_interaction("acme", contact="c1", channel="print"),
            usage.goal_triggered("acme", contact="c1", goal="signup"),
            usage.email_sent("acme", contact="c4"),  # the default kind, as build()'s
        ]
        receipts = [await p for p in pending]  # awaiting a helper gives its receipt
        batch = [usage.build("search.viewed", "acme", surface="instant") for _ in range(50)]
        receipts += await usage.send_many(batch)
    assert [r.offset for r in receipts] == list(range(63))
    values = await read_all(kafka_bootstrap, new_topic, 63)
    events = [decode_event(v, now_ms=2**62) for v in values]
    assert [e.type.value for e in events[:3]] == ["email.sent", "email.opened", "sms.sent"]
    assert events[2].quantity == 2
    assert events[5].quantity == 3
    assert events[12].kind == "marketing"
    assert {e.account for e in events} == {"acme"}
    assert len({e.id for e in events}) == 63
    assert orjson.loads(values[0])["source"] == "sdk-test"


@pytest.mark.integration
async def test_the_sync_producer_returns_at_once_and_close_delivers_everything(
    kafka_bootstrap: str, new_topic: str
) -> None:
    with SyncUsageProducer.connect(kafka_bootstrap, source="script", topic=new_topic) as usage:
        first = usage.email_sent("acme", contact="c1", idempotency_key="mail-1")
        again = usage.email_sent("acme", contact="c1", idempotency_key="mail-1")
        assert isinstance(first, concurrent.futures.Future)
        emitted = [usage.search_viewed("acme") for _ in range(500)]
        acknowledged = usage.send(usage.build("search.viewed", "acme", surface="page"))
    # close() flushed: every future is resolved without waiting further
    assert all(f.done() for f in [first, again, *emitted])
    assert first.result().event_id == again.result().event_id  # same key: counted once
    assert (first.result().offset, again.result().offset) == (0, 1)
    assert [f.result().offset for f in emitted] == list(range(2, 502))
    assert acknowledged.offset == 502
    values = await read_all(kafka_bootstrap, new_topic, 503)
    assert len(values) == 503


@pytest.mark.integration
async def test_the_sync_producer_takes_events_from_many_threads(
    kafka_bootstrap: str, new_topic: str
) -> None:
    with (
        SyncUsageProducer.connect(
            kafka_bootstrap, source="threads", topic=new_topic, max_buffered=64
        ) as usage,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        batches = list(
            pool.map(
                lambda t: [usage.search_viewed("acme", idempotency_key=f"{t}/{i}")
                           for i in range(250)],
                range(4),
            )
        )  # fmt: skip
    receipts = [f.result() for batch in batches for f in batch]
    assert sorted(r.offset for r in receipts) == list(range(1000))
    values = await read_all(kafka_bootstrap, new_topic, 1000)
    ids = {decode_event(v, now_ms=2**62).id for v in values}
    assert len(values) == len(ids) == 1000
    assert ids == {r.event_id for r in receipts}
