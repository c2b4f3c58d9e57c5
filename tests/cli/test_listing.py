"""`metering accounts list`, `plans list` and `tail`, run as commands against the real Kafka."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.cli.test_failures import event

METERING = str(Path(sys.executable).with_name("metering"))


@pytest.mark.integration
def test_lists_and_tail_read_what_the_cli_wrote(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERING_")}
    env |= {
        "METERING_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "METERING_EVENTS_PARTITIONS": "2",
        **{
            f"METERING_{name}_TOPIC": f"list.{run_id}.{name.lower()}"
            for name in (
                "EVENTS",
                "ACCOUNTS",
                "DEAD_LETTER",
                "LATE",
                "THRESHOLDS",
                "STATEMENTS",
                "TIERS",
                "REMINDERS",
            )
        },
    }

    def metering(*words: str, stdin: bytes = b"") -> str:
        done = subprocess.run(
            [METERING, *words], env=env, input=stdin, capture_output=True, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode()

    metering("topics", "create")
    metering("plans", "apply", "--examples")
    metering("accounts", "put", "-", stdin=b'{"id": "acct-0", "plan": "clerk"}')
    metering("accounts", "put", "-", stdin=b'{"id": "acct-1", "plan": "apsis-essential"}')

    accounts = orjson.loads(metering("accounts", "list", "--json"))
    assert [(a["id"], a["plan"]) for a in accounts] == [
        ("acct-0", "clerk"),
        ("acct-1", "apsis-essential"),
    ]
    table = metering("accounts", "list").splitlines()
    assert table[0].split()[:2] == ["account", "plan"]
    assert table[1].split()[:2] == ["acct-0", "clerk"]
    assert table[-1].startswith("2 accounts on ")

    plans = {p["id"]: p for p in orjson.loads(metering("plans", "list", "--json"))}
    assert plans["clerk"]["accounts"] == 1
    assert plans["apsis-essential"]["accounts"] == 1
    assert plans["clerk"]["meters"]
    assert any(line.startswith("clerk ") for line in metering("plans", "list").splitlines())

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(event(i) for i in range(4)) + b"\n")
    metering("produce", "--quiet", str(events))
    lines = [orjson.loads(x) for x in metering("tail", "events", "--from-beginning").splitlines()]
    assert sorted((x["key"], x["value"]["id"]) for x in lines) == [
        ("acct-0", "e0"),
        ("acct-0", "e2"),
        ("acct-1", "e1"),
        ("acct-1", "e3"),
    ]
    assert len(metering("tail", "events", "--from-beginning", "-n", "1").splitlines()) == 1
