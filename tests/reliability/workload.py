"""The fault suite's event stream, its ground truth, and the exact comparison after a fault.

The truth is plain Python over the documents as produced, independent of the metering code
(only `crossing_id`, the published id format, is shared): per account, how many events, how
many e-mails, which contacts, how many recommendation views, which profiles are present after
the adds and deletes in production order, and the SMS credit balance. Every meter of
`plans/faults-plan.toml` has a final value that does not depend on where batches were cut,
so any fault that loses, doubles or reorders work shows up as a difference.

About 2 % of the stream are producer retries (an earlier event sent again with the same id:
counted once) and about 0.5 % are records the processor must reject (each with unique bytes,
so the dead-letter check can match them one by one).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from metering.core.account_codec import account_from_json
from metering.core.deltas import Aggregation
from metering.core.periods import PeriodKind, period_of
from metering.core.rfc3339 import format_ms
from metering.core.thresholds import crossing_id
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter

PLAN_FILE = Path(__file__).parent / "plans" / "faults-plan.toml"
PLAN_ID = "faults-plan"
EMAIL_LIMIT = 60  # at_risk at 4/5 (48), exceeded above 60
CONTACT_LIMIT = 25  # at_risk at 20, exceeded above 25
VIEW_LIMIT = 50  # reached at 50


@dataclass
class AccountTruth:
    events: int = 0
    emails: int = 0
    contacts: set[str] = field(default_factory=set)
    views: int = 0
    profiles: set[str] = field(default_factory=set)
    credits: int = 0


class Truth:
    """What every counter must be, from the documents as produced (first id wins)."""

    def __init__(self, accounts: list[str]) -> None:
        self.accounts = accounts
        self.by_account: dict[str, AccountTruth] = defaultdict(AccountTruth)
        self.seen_ids: set[str] = set()
        self.records = 0
        """Records produced (valid, retried and invalid)."""
        self.invalid: set[bytes] = set()
        """Values of the records the processor must dead-letter."""

    def add(self, doc: dict[str, Any]) -> None:
        self.records += 1
        event_id = str(doc["id"])
        if event_id in self.seen_ids:  # a producer retry: counts once
            return
        self.seen_ids.add(event_id)
        acct = self.by_account[str(doc["subject"])]
        data: dict[str, Any] = doc["data"]
        kind = doc["type"]
        acct.events += 1
        if kind == "email.sent":
            acct.emails += 1
            acct.contacts.add(data["contact"])
        elif kind == "recommendation.viewed":
            acct.views += int(data["quantity"])
        elif kind == "contact.added":
            acct.profiles.add(data["contact"])
        elif kind == "contact.deleted":
            acct.profiles.discard(data["contact"])
        elif kind == "sms.credits_added":
            acct.credits += int(data["quantity"])
        elif kind == "sms.sent":
            acct.credits -= int(data.get("quantity", 1))
            acct.contacts.add(data["contact"])
        else:
            raise AssertionError(kind)

    def add_invalid(self, value: bytes) -> None:
        self.records += 1
        self.invalid.add(value)

    @property
    def events(self) -> int:
        """Distinct valid events (what the `events` counters must add up to)."""
        return len(self.seen_ids)

    def crossings(self, month: str) -> set[str]:
        """Crossing ids the thresholds topic must carry (every meter here only grows)."""
        ids: set[str] = set()
        for account in self.accounts:
            t = self.by_account[account]
            if t.emails * 5 >= EMAIL_LIMIT * 4:
                ids.add(crossing_id(account, "emails", month, "at_risk"))
            if t.emails > EMAIL_LIMIT:
                ids.add(crossing_id(account, "emails", month, "exceeded"))
            distinct = len(t.contacts)
            if distinct * 5 >= CONTACT_LIMIT * 4:
                ids.add(crossing_id(account, "active_contacts", month, "at_risk"))
            if distinct > CONTACT_LIMIT:
                ids.add(crossing_id(account, "active_contacts", month, "exceeded"))
            if t.views >= VIEW_LIMIT:
                ids.add(crossing_id(account, "recommendation_views", month, "reached"))
        return ids


class Workload:
    """A seeded stream of usage events over `accounts` with Zipf-like skew."""

    def __init__(self, rng: random.Random, truth: Truth, event_time_ms: int) -> None:
        self.rng = rng
        self.truth = truth
        self.time_ms = event_time_ms
        self.month_start = period_of(PeriodKind.CALENDAR_MONTH, event_time_ms, "UTC").start_ms
        self.sent: list[dict[str, Any]] = []
        self.weights = [1 / (i + 1) for i in range(len(truth.accounts))]

    def _time(self) -> int:
        """Spread over the minute before the run started, never into the previous month."""
        return max(self.month_start, self.time_ms - self.rng.randrange(60_000))

    def _doc(self, account: str) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.50:
            kind, data = "email.sent", {"contact": f"c{rng.randrange(40)}", "kind": "marketing"}
        elif roll < 0.65:
            kind, data = "recommendation.viewed", {"quantity": rng.randrange(1, 4)}
        elif roll < 0.77:
            kind, data = "contact.added", {"contact": f"p{rng.randrange(30)}", "origin": "api"}
        elif roll < 0.82:
            kind, data = "contact.deleted", {"contact": f"p{rng.randrange(30)}"}
        elif roll < 0.85:
            kind, data = "sms.credits_added", {"quantity": 100}
        else:
            kind, data = "sms.sent", {"contact": f"c{rng.randrange(40)}", "quantity": 1}
        return {
            "specversion": "1.0",
            "id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "source": "faults",
            "type": kind,
            "subject": account,
            "time": format_ms(self._time()),
            "data": data,
        }

    def _invalid(self) -> tuple[bytes, bytes]:
        tag = uuid.UUID(int=self.rng.getrandbits(128)).hex
        account = self.rng.choice(self.truth.accounts)
        roll = self.rng.random()
        if roll < 0.4:
            value = f"garbage-{tag}".encode()
        elif roll < 0.7:
            doc = self._doc(account)
            doc["subject"] = f"nobody-{tag}"
            value = orjson.dumps(doc)
        else:
            doc = self._doc(account)
            doc["id"] = f"bad-{tag}"
            doc["data"] = {"quantity": -1, "contact": "x", "kind": "marketing"}
            doc["type"] = "recommendation.viewed"
            value = orjson.dumps(doc)
        return account.encode(), value

    def records(self, n: int) -> list[tuple[bytes, bytes]]:
        """The next `n` records (key, value); the truth is updated as they are made."""
        out: list[tuple[bytes, bytes]] = []
        for _ in range(n):
            roll = self.rng.random()
            if roll < 0.005:
                key, value = self._invalid()
                self.truth.add_invalid(value)
                out.append((key, value))
                continue
            if self.sent and roll < 0.025:
                doc = self.rng.choice(self.sent)
            else:
                doc = self._doc(self.rng.choices(self.truth.accounts, self.weights)[0])
                self.sent.append(doc)
            self.truth.add(doc)
            out.append((str(doc["subject"]).encode(), orjson.dumps(doc)))
        return out


def month_of(ms: int) -> str:
    return period_of(PeriodKind.CALENDAR_MONTH, ms, "UTC").key


# --- Kafka helpers (usable outside pytest: the runner has no fixtures) --------------------


async def create_topics(
    bootstrap: str, prefix: str, *, partitions: int, replication: int = 1
) -> dict[str, str]:
    """Fresh topics for one case: events (`partitions`), and 1-partition side topics, each
    with `replication` replicas (3 on the private three-node cluster)."""
    names = {
        "events_topic": f"{prefix}.events",
        "dead_letter_topic": f"{prefix}.dead-letter",
        "late_topic": f"{prefix}.late",
        "thresholds_topic": f"{prefix}.thresholds",
        "accounts_topic": f"{prefix}.accounts",
        "publisher_progress_topic": f"{prefix}.publisher-progress",
    }
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(name, partitions if field_ == "events_topic" else 1, replication)
                for field_, name in names.items()
            ]
        )
        for topic, code, *_ in response.topic_errors:
            if code:
                raise for_code(code)(f"could not create topic {topic}")
    finally:
        await admin.close()
    return names


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.delete_topics(list(names))
    except (KafkaError, OSError):
        pass  # a private broker being torn down, or topics already gone
    finally:
        await admin.close()


def case_settings(bootstrap: str, redis_url: str, topics: dict[str, str]) -> Settings:
    return Settings(
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        consumer_group=f"faults-{uuid.uuid4().hex[:8]}",
        publisher_transactional_id=f"faults-publisher-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        grace_s=3600,
        kafka_session_timeout_ms=6_000,
        batch_max_records=300,
        **topics,  # type: ignore[arg-type]
    )


async def publish_config(settings: Settings, accounts: Iterable[str]) -> None:
    """The fault plan and its accounts, on the case's accounts topic."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        await writer.put_plan(PLAN_ID, PLAN_FILE.read_text(), PLAN_FILE.name)
        for account in accounts:
            await writer.put_account(account_from_json({"id": account, "plan": PLAN_ID}))
    finally:
        await producer.stop()


class StreamProducer:
    """Produces records to the events topic; survives a broker restart by retrying a chunk.

    The producer is idempotent, so the broker never stores a retried send twice; a chunk sent
    again after an error may repeat records that did arrive, which the truth already allows:
    a valid event repeats with its id (counted once) and a rejected record is matched by its
    bytes.
    """

    def __init__(
        self, bootstrap: str, topic: str, *, codecs: tuple[str | None, ...] = (None,)
    ) -> None:
        self.topic = topic
        self.producers = [
            AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                linger_ms=10,
                enable_idempotence=True,
                request_timeout_ms=60_000,
                compression_type=codec,
            )
            for codec in codecs
        ]
        """One producer per compression codec; chunks go to them in turn."""
        self.codecs = codecs
        self.sent = 0
        self.retries = 0
        self.chunks = 0
        self.chunks_by_codec: dict[str, int] = {}

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer of the current chunk."""
        return self.producers[self.chunks % len(self.producers)]

    async def start(self) -> None:
        for producer in self.producers:
            await producer.start()

    async def stop(self) -> None:
        for producer in self.producers:
            await producer.stop()

    async def send(self, records: list[tuple[bytes, bytes]], *, attempts: int = 10) -> None:
        producer = self.producer
        codec = self.codecs[self.chunks % len(self.codecs)] or "none"
        self.chunks += 1
        self.chunks_by_codec[codec] = self.chunks_by_codec.get(codec, 0) + 1
        for attempt in range(attempts):
            try:
                futures = [
                    await producer.send(self.topic, key=key, value=value) for key, value in records
                ]
                await asyncio.gather(*futures)
            except KafkaError:
                if attempt == attempts - 1:
                    raise
                self.retries += 1
                await asyncio.sleep(1.0)
            else:
                self.sent += len(records)
                return

    async def stream(
        self, workload: Workload, total: int, *, duration_s: float, chunk: int = 100
    ) -> None:
        """Send `total` records in chunks spread evenly over about `duration_s`."""
        chunks = max(1, -(-total // chunk))
        pause = duration_s / chunks
        left = total
        for _ in range(chunks):
            n = min(chunk, left)
            left -= n
            await self.send(workload.records(n))
            await asyncio.sleep(pause)


async def read_all(
    bootstrap: str, topic: str, *, at_least: int, timeout_s: float = 60
) -> list[Any]:
    """Every record of `topic` (all partitions) once at least `at_least` have arrived."""
    probe = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await probe.start()
    try:
        parts = await probe.partitions_for(topic)  # waits for the topic's metadata
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # as billing reads: each published id once
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(records)
            positions = {tp: await consumer.position(tp) for tp in tps}
            if len(found) >= at_least and all(positions[tp] >= ends[tp] for tp in tps):
                break
        return found
    finally:
        await consumer.stop()


# --- the comparison ------------------------------------------------------------------------


@dataclass
class Verdict:
    """How the state after the faults compares with the truth."""

    events: int = 0
    """Distinct valid events produced."""
    records: int = 0
    """Records produced, retries and rejects included."""
    counted: int = 0
    """Sum of the `events` counters."""
    lost: int = 0
    """Events missing from the `events` counters (summed over accounts)."""
    doubled: int = 0
    """Events counted more than once (summed over accounts)."""
    mismatches: list[str] = field(default_factory=list)
    """Accounts whose counters differ from the truth, with the values."""
    crossings_expected: int = 0
    crossings_distinct: int = 0
    crossings_missing: int = 0
    crossings_unexpected: int = 0
    crossing_deliveries: int = 0
    """Records on the thresholds topic read with `read_committed`: exactly the distinct ids
    (the publisher's Kafka transactions, ADR 0008); more is a duplicate and fails the case."""
    dead_letters_expected: int = 0
    dead_letters_missing: int = 0
    dead_letter_deliveries: int = 0

    @property
    def exact(self) -> bool:
        return (
            self.lost == 0
            and self.doubled == 0
            and not self.mismatches
            and self.crossings_missing == 0
            and self.crossings_unexpected == 0
            and self.crossing_duplicates == 0
            and self.dead_letters_missing == 0
        )

    @property
    def crossing_duplicates(self) -> int:
        return self.crossing_deliveries - self.crossings_distinct

    def summary(self) -> str:
        return (
            f"events {self.events} (records {self.records}), counted {self.counted}, "
            f"lost {self.lost}, doubled {self.doubled}, mismatched accounts "
            f"{len(self.mismatches)}; crossings expected {self.crossings_expected}, distinct "
            f"published {self.crossings_distinct}, missing {self.crossings_missing}, "
            f"unexpected {self.crossings_unexpected}, deliveries {self.crossing_deliveries} "
            f"(duplicates {self.crossing_duplicates}); "
            f"dead letters expected {self.dead_letters_expected}, missing "
            f"{self.dead_letters_missing}, deliveries {self.dead_letter_deliveries}"
            + (f"; first mismatches: {self.mismatches[:3]}" if self.mismatches else "")
        )


async def compare(settings: Settings, store: RedisStateStore, truth: Truth, month: str) -> Verdict:
    """Read every counter and the output topics and compare them with the truth."""
    v = Verdict(events=truth.events, records=truth.records)
    for account in truth.accounts:
        t = truth.by_account[account]
        got = await store.read_amounts(
            account,
            [
                ("events", month, Aggregation.COUNT),
                ("emails", month, Aggregation.COUNT),
                ("active_contacts", month, Aggregation.DISTINCT),
                ("recommendation_views", month, Aggregation.SUM),
                ("profiles", "", Aggregation.GAUGE),
                ("sms_credits", "", Aggregation.BALANCE),
            ],
        )
        want = {
            ("events", month): t.events,
            ("emails", month): t.emails,
            ("active_contacts", month): len(t.contacts),
            ("recommendation_views", month): t.views,
            ("profiles", ""): len(t.profiles),
            ("sms_credits", ""): t.credits,
        }
        counted = got[("events", month)]
        v.counted += counted
        v.lost += max(0, t.events - counted)
        v.doubled += max(0, counted - t.events)
        if got != want:
            diff = {f"{m}": (got[k], want[k]) for k in want if got[k] != want[k] for m in [k[0]]}
            v.mismatches.append(f"{account}: (got, want) {diff}")
        if t.contacts and await store.members(account, "active_contacts", month) != t.contacts:
            v.mismatches.append(f"{account}: active_contacts members differ")
    expected = truth.crossings(month)
    v.crossings_expected = len(expected)
    records = await read_all(
        settings.kafka_bootstrap, settings.thresholds_topic, at_least=len(expected)
    )
    ids = [orjson.loads(r.value)["id"] for r in records]
    v.crossing_deliveries = len(ids)
    v.crossings_distinct = len(set(ids))
    v.crossings_missing = len(expected - set(ids))
    v.crossings_unexpected = len(set(ids) - expected)
    v.dead_letters_expected = len(truth.invalid)
    dead = await read_all(
        settings.kafka_bootstrap, settings.dead_letter_topic, at_least=len(truth.invalid)
    )
    v.dead_letter_deliveries = len(dead)
    v.dead_letters_missing = len(
        {_sha256(value) for value in truth.invalid} - {_dead_letter_sha256(r) for r in dead}
    )
    return v


def _sha256(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def _dead_letter_sha256(record: Any) -> str | None:
    """The SHA-256 of the record a dead letter stands for: of its value when forwarded whole,
    from its `original-sha256` header when only a summary could be forwarded (a record near
    the broker's size limit); None for a record without a reason."""
    headers = {k: bytes(v) for k, v in record.headers}
    if not headers.get("reason"):
        return None
    if headers.get("summary") == b"true":
        return headers["original-sha256"].decode()
    return _sha256(bytes(record.value))
