"""Every expected failure of the real `metering` command is one line with its exit status.

Each case runs the installed `metering` script in a subprocess, as an operator would, against
closed ports, missing topics, bad settings and bad files, and checks the whole of stderr: one
line, starting `metering: `, naming the problem and the fix (docs/cli.md lists the statuses),
no traceback and no "Unclosed" noise unless `--debug`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from metering.cli.failures import Exit
from tests.conftest import TopicFactory

METERING = str(Path(sys.executable).with_name("metering"))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def run(*words: str, env: dict[str, str] | None = None, stdin: bytes = b"") -> tuple[int, str]:
    """Exit status and stderr of `metering WORDS` with only these METERING_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    done = subprocess.run(
        [METERING, *words],
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stderr.decode()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("metering: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def event(i: int) -> bytes:
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"e{i}",
            "source": "cli-test",
            "type": "search.viewed",
            "subject": f"acct-{i % 2}",
            "time": "2026-11-23T10:00:00Z",
            "data": {"surface": "page"},
        }
    )


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(event(i) for i in range(3)) + b"\n")
    return path


@pytest.mark.parametrize(
    "words",
    [["plans", "apply", "--examples"], ["topics", "create"], ["accounts", "put", "-"]],
    ids=" ".join,
)
def test_kafka_unreachable(words: list[str]) -> None:
    kafka = f"127.0.0.1:{closed_port()}"
    code, err = run(
        *words, env={"METERING_KAFKA_BOOTSTRAP": kafka}, stdin=b'{"id": "a", "plan": "clerk"}'
    )
    line = one_line(err)
    assert code == Exit.KAFKA_UNAVAILABLE
    assert f"is Kafka running at {kafka}?" in line
    assert "METERING_KAFKA_BOOTSTRAP" in line
    assert "Unclosed" not in err


def test_kafka_unreachable_when_producing(events_file: Path) -> None:
    code, err = run(
        "produce", str(events_file), env={"METERING_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}"}
    )
    assert code == Exit.KAFKA_UNAVAILABLE
    assert "METERING_KAFKA_BOOTSTRAP" in one_line(err)


@pytest.mark.parametrize("words", [["api-keys", "list"], ["api"]], ids=" ".join)
@pytest.mark.integration
async def test_redis_unreachable(words: list[str], kafka_bootstrap: str, new_topic: str) -> None:
    # Kafka and the accounts topic are there (api-keys reads key records from the topic):
    # only Redis is missing, whichever a command checks first.
    url = f"redis://127.0.0.1:{closed_port()}/0"
    env = {
        "METERING_REDIS_URL": url,
        "METERING_API_PORT": "0",
        "METERING_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "METERING_ACCOUNTS_TOPIC": new_topic,
    }
    code, err = await asyncio.to_thread(run, *words, env=env)
    line = one_line(err)
    assert code == Exit.REDIS_UNAVAILABLE
    assert line.startswith("metering: Redis unavailable")
    assert "METERING_REDIS_URL" in line


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("METERING_KAFKA_SECURITY_PROTOCOL", "SSL_PLEASE", ["plans", "apply", "--examples"]),
        ("METERING_REDIS_URL", "127.0.0.1:6379", ["api-keys", "list"]),
        ("METERING_EVENTS_PARTITIONS", "twelve", ["topics", "create"]),
        ("METERING_LOG_LEVEL", "LOUD", ["plans", "validate", "--examples"]),
        ("METERING_LOG_FORMAT", "xml", ["plans", "validate", "--examples"]),
        ("METERING_KAFKA_SASL_MECHANISM", "GSSAPI", ["topics", "create"]),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_bad_settings(variable: str, value: str, words: list[str]) -> None:
    code, err = run(*words, env={variable: value})
    line = one_line(err)
    assert code == Exit.BAD_SETTINGS
    assert line.startswith(f"metering: bad setting {variable}: ")
    assert repr(value) in line or "redis://" in line


def test_missing_files_and_bad_json(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    for words in (["produce", str(missing)], ["accounts", "put", str(missing)]):
        code, err = run(*words)
        assert code == Exit.BAD_INPUT
        line = one_line(err)
        assert line == f"metering: {missing}: no such file; give an existing file, or - for stdin"
    code, err = run("produce", str(tmp_path))
    assert code == Exit.BAD_INPUT
    assert "is a directory" in one_line(err)
    bad = tmp_path / "account.json"
    bad.write_text("{id: acct-1}")
    code, err = run("accounts", "put", str(bad))
    assert code == Exit.BAD_INPUT
    assert "not JSON" in one_line(err)
    code, err = run("produce", "-", stdin=b"\n\n")
    assert code == Exit.BAD_INPUT
    assert "no events" in one_line(err)


def test_api_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, err = run("usage", "acct-1", "--api-url", url, "--key", "k")
    line = one_line(err)
    assert code == Exit.API_UNREACHABLE
    assert f"cannot reach the API at {url}" in line
    assert "METERING_API_URL" in line


def test_debug_adds_the_traceback() -> None:
    code, err = run("--debug", "api-keys", "list", env={"METERING_REDIS_URL": "localhost"})
    assert code == Exit.BAD_SETTINGS
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("metering: bad setting METERING_REDIS_URL")


def test_version() -> None:
    done = subprocess.run([METERING, "--version"], capture_output=True, check=False, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("metering 0.")


@pytest.mark.integration
async def test_missing_topic(kafka_bootstrap: str, events_file: Path) -> None:
    code, err = run(
        "produce",
        str(events_file),
        env={"METERING_KAFKA_BOOTSTRAP": kafka_bootstrap, "METERING_EVENTS_TOPIC": "no.such.topic"},
    )
    line = one_line(err)
    assert code == Exit.TOPIC_MISSING
    assert "no.such.topic (METERING_EVENTS_TOPIC)" in line
    assert "metering topics create" in line


async def _records(kafka_bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while len(values) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                values.extend(r.value for r in records if r.value is not None)
        return values
    finally:
        await consumer.stop()


@pytest.mark.integration
async def test_produce_refuses_bad_lines_and_sends_nothing(
    kafka_bootstrap: str, topic_factory: TopicFactory, tmp_path: Path
) -> None:
    topic = await topic_factory()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([event(1), b"not json", event(2), b"", b'{"specversion": "1.0"}']))
    env = {"METERING_KAFKA_BOOTSTRAP": kafka_bootstrap, "METERING_EVENTS_TOPIC": topic}
    code, err = run("produce", str(path), env=env)
    assert code == Exit.BAD_INPUT
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{path}:2: not_json")
    assert lines[1].startswith(f"{path}:5: missing_field")
    assert lines[2] == (
        f"metering: {path}: 2 of 4 lines are not valid usage events (lines 2, 5); nothing was "
        "sent: fix or remove them (docs/asyncapi.yaml)"
    )
    assert await _records(kafka_bootstrap, topic) == []

    good = tmp_path / "good.jsonl"
    good.write_bytes(b"\n".join(event(i) for i in range(5)) + b"\n")
    code, err = run("produce", str(good), env=env)
    assert code == 0, err
    assert "produce: 5/5 events (100.0%)" in err  # the last progress line (stderr is a pipe)
    assert await _records(kafka_bootstrap, topic) == [event(i) for i in range(5)]


@pytest.mark.integration
async def test_a_service_without_its_accounts_topic(kafka_bootstrap: str, redis_url: str) -> None:
    """The processor waits for the accounts topic (the follower's catch-up timeout, 30 s),
    then exits 7 with one line."""
    code, err = run(
        "processor",
        env={
            "METERING_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "METERING_REDIS_URL": redis_url,
            "METERING_ACCOUNTS_TOPIC": "no.such.accounts",
            "METERING_METRICS_PORT": "0",
            "METERING_LOG_FORMAT": "json",
        },
    )
    assert code == Exit.TOPIC_MISSING
    last = err.strip().splitlines()[-1]
    assert last == (
        "metering: Kafka topic missing: no.such.accounts (METERING_ACCOUNTS_TOPIC); create it "
        "with `metering topics create`, or point the variable at an existing topic "
        "(`deploy/demo` prints its run's exports)"
    )
    assert "Traceback" not in err
    logs = [orjson.loads(line) for line in err.strip().splitlines()[:-1]]
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in logs)
    assert not [x for x in logs if x["logger"].startswith("aiokafka") and x["level"] == "INFO"]
