"""Credentials: Redis AUTH (password, ACL user) and TLS work through the URL, Kafka SASL/SSL
options reach every client, and no secret ever appears in a log line, an error or a repr.

Redis runs privately here (requirepass, an ACL user, TLS with a throw-away CA); it is paused
and stopped under a running processor so that the retry warnings, whose text comes from
redis-py's exceptions, are written to the log we then search for the secrets.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import orjson
import pytest

from metering.core.account_codec import account_from_json
from metering.core.deltas import Aggregation
from metering.core.errors import StateStoreError
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from streams.kafka import client_options, new_consumer, new_producer
from streams.topics import ensure_topics
from tests.integration.harness import (
    PLAN_FILE,
    ProcessorProcess,
    TopicFactory,
    caught_up,
    encoded,
    event,
    make_settings,
    now_ms,
    produce,
    publish_config,
)
from tests.reliability.cases import wait_for
from tests.reliability.infra import PrivateRedis, SaslKafka, TlsFiles, free_port

SECRET = "s3cr3t-Pa55-do-not-log"
USER_SECRET = "acl-Pa55-never-printed"


def month() -> str:
    from metering.core.periods import PeriodKind, period_of  # noqa: PLC0415

    return period_of(PeriodKind.CALENDAR_MONTH, now_ms(), "UTC").key


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", password=SECRET)
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_with_tls_and_user(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(
        tmp_path / "redis-tls",
        users={"metering": USER_SECRET},
        tls=TlsFiles.make(tmp_path / "tls"),
    )
    server.start()
    yield server
    server.close()


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"secret found: ...{text[text.find(secret) - 200 :][:400]}"


async def count_emails(settings: Settings, store: RedisStateStore, n: int) -> None:
    docs = [event("acme", "email.sent", contact=f"c{i}", kind="marketing") for i in range(n)]
    await produce(settings, encoded(docs))
    await wait_for(lambda: caught_up(settings, store), what="catch-up", timeout_s=120, procs=[])


@pytest.mark.integration
async def test_a_password_in_the_url_works_and_never_reaches_the_logs(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    redis_with_password: PrivateRedis,
    tmp_path: Path,
) -> None:
    redis = redis_with_password
    settings = await make_settings(kafka_bootstrap, redis.url, topic_factory, partitions=1)
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    store = RedisStateStore.from_url(redis.url)
    log = tmp_path / "processor.log"
    proc = ProcessorProcess.start(settings, log)
    try:
        await proc.ready()
        await count_emails(settings, store, 20)
        # Make the processor log Redis errors (their text comes from redis-py): a hang that
        # outlasts the 5 s socket timeout, then refused connections.
        redis.pause()
        await produce(
            settings, encoded([event("acme", "email.sent", contact="x", kind="marketing")])
        )
        await asyncio.sleep(6.5)
        redis.resume()
        redis.stop()
        await asyncio.sleep(2)
        redis.start()
        await count_emails(settings, store, 20)
        assert proc.terminate() == 0
        got = await store.read_amounts("acme", [("emails", month(), Aggregation.COUNT)])
        assert got[("emails", month())] == 41
    finally:
        proc.stop_if_running()
        await store.close()
    text = log.read_text(errors="replace")
    assert "Redis unavailable, retrying" in text  # the errors were logged...
    assert_no_secret(text, SECRET)  # ...without the password


@pytest.mark.integration
async def test_an_acl_user_over_tls_works_and_the_certificate_is_checked(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    redis_with_tls_and_user: PrivateRedis,
    tmp_path: Path,
) -> None:
    redis = redis_with_tls_and_user
    url = redis.url_for("metering", USER_SECRET)
    assert url.startswith("rediss://metering:")
    settings = await make_settings(kafka_bootstrap, url, topic_factory, partitions=1)
    await publish_config(settings, [{"id": "acme", "plan": "it-plan"}])
    store = RedisStateStore.from_url(url)
    log = tmp_path / "processor.log"
    proc = ProcessorProcess.start(settings, log)
    try:
        await proc.ready()
        await count_emails(settings, store, 10)
        assert proc.terminate() == 0
        got = await store.read_amounts("acme", [("emails", month(), Aggregation.COUNT)])
        assert got[("emails", month())] == 10
    finally:
        proc.stop_if_running()
        await store.close()
    assert_no_secret(log.read_text(errors="replace"), USER_SECRET)

    # Without our CA the server certificate is not trusted: the processor refuses to start.
    untrusted = url.split("?", 1)[0]
    log2 = tmp_path / "untrusted.log"
    proc = ProcessorProcess.start(replace(settings, redis_url=untrusted), log2)
    try:
        code = await asyncio.to_thread(proc.proc.wait, 60)
    finally:
        proc.stop_if_running()
    text = log2.read_text(errors="replace")
    assert code != 0
    assert "certificate verify failed" in text
    assert_no_secret(text, USER_SECRET)


@pytest.mark.integration
async def test_a_wrong_password_stops_the_processor_with_a_clear_error_and_no_secret(
    kafka_bootstrap: str,
    topic_factory: TopicFactory,
    redis_with_password: PrivateRedis,
    tmp_path: Path,
) -> None:
    wrong = "Wr0ng-Pa55-also-secret"
    url = redis_with_password.url_for(None, wrong)
    settings = await make_settings(kafka_bootstrap, url, topic_factory, partitions=1)
    log = tmp_path / "processor.log"
    proc = ProcessorProcess.start(settings, log)
    try:
        code = await asyncio.to_thread(proc.proc.wait, 60)
    finally:
        proc.stop_if_running()
    text = log.read_text(errors="replace")
    assert code == 8  # Redis unavailable (docs/cli.md)
    assert "metering: Redis unavailable during PING" in text
    assert "invalid username-password pair" in text
    assert_no_secret(text, wrong, SECRET)


@pytest.mark.integration
async def test_store_errors_and_reprs_never_show_the_password(
    redis_with_password: PrivateRedis,
) -> None:
    redis = redis_with_password
    messages: list[str] = []

    async def failure(url: str) -> None:
        store = RedisStateStore.from_url(url, timeout_s=1.0, client_retries=0)
        messages.append(repr(store._client))
        messages.append(repr(store._client.connection_pool))
        try:
            with pytest.raises(StateStoreError) as caught:
                await store.ping()
            messages.extend([str(caught.value), repr(caught.value), str(caught.value.__cause__)])
        finally:
            await store.close()

    await failure(redis.url_for(None, "Wr0ng-" + SECRET))  # refused credentials
    redis.pause()
    try:
        await failure(redis.url)  # a hung server: timeout
    finally:
        redis.resume()
    closed = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    await failure(closed)  # nothing listens: connection refused
    await failure(f"rediss://:{SECRET}@127.0.0.1:{redis.port}/0")  # TLS to a plain port
    text = "\n".join(messages)
    assert "127.0.0.1" in text  # the messages do say where
    assert_no_secret(text, SECRET)
    assert_no_secret(repr(Settings(redis_url=closed)), SECRET)


def test_kafka_security_settings_reach_every_client() -> None:
    """SASL over TLS: the options carry the mechanism, the user, the password and a verifying
    TLS context built from the CA file; producers and consumers are built with them."""
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="metering",
        kafka_sasl_password=SECRET,
    )
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("metering", SECRET)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert_no_secret(repr(settings), SECRET)

    plain = client_options(Settings())
    assert plain["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in plain
    assert "ssl_context" not in plain
    tls_only = client_options(Settings(kafka_security_protocol="SSL"))
    assert "sasl_mechanism" not in tls_only
    assert isinstance(tls_only["ssl_context"], ssl.SSLContext)
    sasl_plain = client_options(
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u")
    )
    assert sasl_plain["sasl_mechanism"] == "PLAIN"  # the default mechanism
    assert "ssl_context" not in sasl_plain


async def test_aiokafka_accepts_the_security_options() -> None:
    """aiokafka validates protocol and mechanism when a client is built: every combination
    we document builds (nothing connects here)."""
    for protocol, mechanism in (
        ("PLAINTEXT", ""),
        ("SSL", ""),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ):
        settings = Settings(
            kafka_security_protocol=protocol,
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="u",
            kafka_sasl_password=SECRET,
        )
        producer = new_producer(settings, client_id="t")
        consumer = new_consumer(settings, group_id=None, client_id="t")
        assert_no_secret(repr(producer) + repr(consumer), SECRET)
        await producer.stop()
        await consumer.stop()


KAFKA_SECRET = "kafka-Pa55-never-printed"


@pytest.fixture
def sasl_kafka(tmp_path: Path) -> Iterator[SaslKafka]:
    broker = SaslKafka(tmp_path / "sasl-kafka", users={"metering": KAFKA_SECRET})
    broker.start()
    yield broker
    broker.close()


def sasl_settings(broker: SaslKafka, redis_url: str, mechanism: str, password: str) -> Settings:
    prefix = f"sasl.{mechanism.lower()}.{uuid.uuid4().hex[:6]}"
    return Settings(
        kafka_bootstrap=broker.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="metering",
        kafka_sasl_password=password,
        redis_url=redis_url,
        events_topic=f"{prefix}.events",
        dead_letter_topic=f"{prefix}.dead-letter",
        late_topic=f"{prefix}.late",
        thresholds_topic=f"{prefix}.thresholds",
        accounts_topic=f"{prefix}.accounts",
        statements_topic=f"{prefix}.statements",
        tiers_topic=f"{prefix}.tiers",
        publisher_progress_topic=f"{prefix}.publisher-progress",
        publisher_transactional_id=f"{prefix}.publisher",
        events_partitions=1,
        consumer_group=f"sasl-{uuid.uuid4().hex[:6]}",
        metrics_port=0,
        kafka_session_timeout_ms=6_000,
    )


def processor_with(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """`metering processor` with every setting in its environment (security ones included)."""
    env = dict(os.environ)
    for f in fields(Settings):
        value = getattr(settings, f.name)
        env[f"METERING_{f.name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "metering.cli", "processor"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )


@pytest.mark.integration
async def test_kafka_sasl_plain_and_scram_work_end_to_end_and_never_log_the_password(
    sasl_kafka: SaslKafka, redis_url: str, tmp_path: Path
) -> None:
    """Against a broker whose only client listener is SASL_PLAINTEXT: topics are created,
    configuration and events produced, and a processor counts them, with PLAIN and with
    SCRAM; a wrong password stops the processor at start. No password in any log."""
    store = RedisStateStore.from_url(redis_url)
    try:
        for account, mechanism in (("acme", "PLAIN"), ("beta", "SCRAM-SHA-512")):
            settings = sasl_settings(sasl_kafka, redis_url, mechanism, KAFKA_SECRET)
            await ensure_topics(settings)
            producer = new_producer(settings, client_id="sasl-test")
            await producer.start()
            try:
                writer = ConfigWriter(producer, settings.accounts_topic)
                await writer.put_plan("it-plan", PLAN_FILE.read_text(), PLAN_FILE.name)
                await writer.put_account(account_from_json({"id": account, "plan": "it-plan"}))
                for i in range(15):
                    doc = event(account, "email.sent", contact=f"c{i}", kind="marketing")
                    await producer.send_and_wait(
                        settings.events_topic, orjson.dumps(doc), key=account.encode()
                    )
            finally:
                await producer.stop()
            log = tmp_path / f"processor-{mechanism}.log"
            proc = processor_with(settings, log)
            try:

                async def counted(a: str = account) -> bool:
                    got = await store.read_amounts(a, [("emails", month(), Aggregation.COUNT)])
                    return got[("emails", month())] == 15

                await wait_for(counted, timeout_s=120, what=f"{mechanism}: events counted")
                proc.terminate()
                assert await asyncio.to_thread(proc.wait, 60) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
            assert_no_secret(log.read_text(errors="replace"), KAFKA_SECRET)

        wrong = "Wr0ng-kafka-Pa55"
        log = tmp_path / "processor-wrong.log"
        proc = processor_with(sasl_settings(sasl_kafka, redis_url, "PLAIN", wrong), log)
        try:
            code = await asyncio.to_thread(proc.wait, 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        text = log.read_text(errors="replace")
        assert code != 0, text[-2000:]
        assert "metering: Kafka" in text, text[-2000:]
        assert_no_secret(text, wrong, KAFKA_SECRET)
    finally:
        await store.close()
