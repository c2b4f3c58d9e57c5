"""The `metering` command: --help everywhere, usage tables and admission through a real API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from metering.cli.console import usage_table
from metering.cli.main import build_parser, main
from tests.api.server import ServerThread

SUBCOMMANDS = [
    [],
    ["processor"],
    ["topics"],
    ["topics", "create"],
    ["plans"],
    ["plans", "validate"],
    ["plans", "apply"],
    ["accounts"],
    ["accounts", "put"],
    ["accounts", "list"],
    ["plans", "list"],
    ["tail"],
    ["remind"],
    ["api"],
    ["api-keys"],
    ["closer"],
    ["backfill"],
    ["produce"],
    ["usage"],
    ["wait"],
    ["admit"],
    ["publisher"],
    ["tiers"],
    ["tiers", "mismatches"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "metering")
def test_every_command_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*words, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: metering" in out
    if words:  # every subcommand: the variables it reads, an example, where the statuses are
        assert "\nenvironment:\n" in out
        example = out.split("\nexample:\n", 1)[1].splitlines()[0]
        assert "metering " in example
        assert "exit status: docs/cli.md" in out
    else:
        assert "exit status:" in out


def test_plans_validate_names_the_file_field_and_problem(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"  # type: ignore[operator]
    bad.write_text('id = "x"\nname = "x"\n[meters.m]\naggregation = "count"\nperiod = "weekly"\n')
    assert main(["plans", "validate", str(bad)]) == 5  # a bad input file
    err = capsys.readouterr().err
    assert "bad.toml" in err
    assert "meters.m.period" in err


def test_plans_validate_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plans", "validate", "--examples"]) == 0
    out = capsys.readouterr().out
    for plan in ("acton-active-contacts", "activecampaign-lite", "apsis-essential", "clerk"):
        assert f"plan {plan}" in out


def test_the_usage_table_colours_the_status() -> None:
    usage = {
        "account": "acme",
        "plan": "p",
        "meters": [
            {
                "meter": "emails",
                "used": 8500,
                "limit": 10000,
                "remaining": 1500,
                "ratio": 0.85,
                "status": "yellow",
                "state": "at_risk",
                "period": {"key": "2026-11", "start": "2026-10-31T23:00:00Z"},
                "last_update": "2026-11-23T10:00:00Z",
            },
            {
                "meter": "sms",
                "used": 0,
                "limit": None,
                "remaining": 0,
                "ratio": None,
                "status": "red",
                "state": "no_credits",
                "period": None,
                "last_update": None,
            },
        ],
    }
    plain = usage_table(usage, colour=False)
    row = "emails  8,500  10,000      1,500  85%  at risk     2026-11  2026-11-23T10:00:00"
    assert row in plain
    coloured = usage_table(usage, colour=True)
    assert "\033[33mat risk\033[0m" in coloured
    assert "\033[31mno credits\033[0m" in coloured


@pytest.mark.integration
def test_usage_and_admission_through_the_api(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ServerThread(redis_url).start()
    try:
        token = server.tokens["acton"]  # Act-On plan with a limit of 5 active contacts
        base = ["--api-url", server.url, "--key", token, "--color", "never"]
        assert main(["usage", "acton", *base]) == 0
        out = capsys.readouterr().out
        assert "acton (plan acton-active-contacts)" in out
        assert "active_contacts" in out
        contacts = [f"c{i}" for i in range(7)]
        assert main(["admit", "acton", "messages", *contacts, *base]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == (
            "refused: 5 of 7 admitted (new_member_over_limit on active_contacts); 0 more would fit"
        )
        assert [line.split()[0] for line in lines[1:]] == ["allow"] * 5 + ["deny"] * 2
        assert "new_member_over_limit" in lines[-1]
        # Act-On counts "up to" the limit: 5 of 5 is red and "at limit", not "over".
        assert main(["usage", "acton", *base]) == 0
        row = next(x for x in capsys.readouterr().out.splitlines() if "active_contacts" in x)
        assert "at limit" in row
        assert "over" not in row
        assert main(["usage", "other", *base]) == 2  # another account's data: refused
        assert "403" in capsys.readouterr().err
        # --json: the API's own answer, for scripts and jq
        assert main(["usage", "acton", "--json", *base]) == 0
        usage = orjson.loads(capsys.readouterr().out)
        meter = next(m for m in usage["meters"] if m["meter"] == "active_contacts")
        assert (meter["used"], meter["state"]) == (5, "at_limit")
        assert main(["admit", "acton", "messages", "c0", "c9", "--json", *base]) == 0
        answer = orjson.loads(capsys.readouterr().out)
        assert answer["admitted"] == 1
        assert [i["allowed"] for i in answer["items"]] == [True, False]
    finally:
        server.stop()


@pytest.mark.integration
async def test_topics_plans_accounts_and_produce_through_the_cli(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4().hex[:8]
    env = {
        "METERING_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "METERING_EVENTS_TOPIC": f"cli.{run}.events",
        "METERING_ACCOUNTS_TOPIC": f"cli.{run}.accounts",
        "METERING_DEAD_LETTER_TOPIC": f"cli.{run}.dlq",
        "METERING_LATE_TOPIC": f"cli.{run}.late",
        "METERING_THRESHOLDS_TOPIC": f"cli.{run}.thresholds",
        "METERING_STATEMENTS_TOPIC": f"cli.{run}.statements",
        "METERING_TIERS_TOPIC": f"cli.{run}.tiers",
        "METERING_EVENTS_PARTITIONS": "2",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    events = tmp_path / "events.jsonl"
    lines = [
        orjson.dumps(
            {
                "specversion": "1.0",
                "id": f"e{i}",
                "source": "cli",
                "type": "search.viewed",
                "subject": f"acct-{i % 3}",
                "time": "2026-11-23T10:00:00Z",
                "data": {"surface": "page"},
            }
        )
        for i in range(9)
    ]
    events.write_bytes(b"\n".join(lines) + b"\n")
    account = tmp_path / "account.json"
    account.write_text('{"id": "acct-0", "plan": "clerk"}')
    assert await asyncio.to_thread(main, ["topics", "create"]) == 0
    assert await asyncio.to_thread(main, ["plans", "apply", "--examples"]) == 0
    assert await asyncio.to_thread(main, ["accounts", "put", str(account)]) == 0
    assert await asyncio.to_thread(main, ["produce", str(events)]) == 0

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(
            [TopicPartition(env["METERING_EVENTS_TOPIC"], p) for p in (0, 1)]
            + [TopicPartition(env["METERING_ACCOUNTS_TOPIC"], 0)]
        )
        seen: list[tuple[str, bytes | None]] = []
        for _ in range(50):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                seen.extend((tp.topic, r.key) for r in records)
            if len(seen) >= 9 + 6:
                break
    finally:
        await consumer.stop()
    produced = [key for topic, key in seen if topic == env["METERING_EVENTS_TOPIC"]]
    assert sorted(produced) == sorted(f"acct-{i % 3}".encode() for i in range(9))
    config = {key for topic, key in seen if topic == env["METERING_ACCOUNTS_TOPIC"]}
    assert b"account:acct-0" in config
    assert b"plan:clerk" in config
