"""The end of every subcommand's `--help`: the environment variables it reads and an example.

Kept apart from the parser so the table can be read (and checked by a test) in one place:
every subcommand has an entry, and every variable named is a setting (docs/configuration.md)
or one of the CLI's own (`METERING_API_URL`, `METERING_API_KEY`).
"""

from __future__ import annotations

import argparse

KAFKA = "METERING_KAFKA_BOOTSTRAP, METERING_KAFKA_SECURITY_PROTOCOL (and the SASL/SSL settings)"
REDIS = "METERING_REDIS_URL"
API = "METERING_API_URL, METERING_API_KEY"
LOGS = "METERING_LOG_LEVEL, METERING_LOG_FORMAT"

HELP: dict[str, tuple[list[str], str]] = {
    "processor": (
        [
            KAFKA,
            REDIS,
            "METERING_EVENTS_TOPIC and the other METERING_*_TOPIC",
            "METERING_CONSUMER_GROUP, METERING_METRICS_PORT",
            LOGS,
        ],
        "metering processor",
    ),
    "topics": ([KAFKA], "metering topics create"),
    "topics create": (
        [KAFKA, "METERING_*_TOPIC, METERING_EVENTS_PARTITIONS, METERING_EVENTS_RETENTION_MS"],
        "metering topics create --replication 3",
    ),
    "plans": ([KAFKA, "METERING_ACCOUNTS_TOPIC"], "metering plans validate --examples"),
    "plans validate": ([], "metering plans validate plans/*.toml"),
    "plans apply": ([KAFKA, "METERING_ACCOUNTS_TOPIC"], "metering plans apply --examples"),
    "accounts": ([KAFKA, "METERING_ACCOUNTS_TOPIC"], "metering accounts put account.json"),
    "accounts put": (
        [KAFKA, "METERING_ACCOUNTS_TOPIC"],
        """echo '{"id": "acct-1", "plan": "clerk"}' | metering accounts put -""",
    ),
    "accounts list": ([KAFKA, "METERING_ACCOUNTS_TOPIC"], "metering accounts list --json"),
    "plans list": ([KAFKA, "METERING_ACCOUNTS_TOPIC"], "metering plans list"),
    "tail": (
        [KAFKA, "METERING_THRESHOLDS_TOPIC, METERING_STATEMENTS_TOPIC, METERING_TIERS_TOPIC, ..."],
        "metering tail thresholds --follow | jq .value",
    ),
    "api": (
        [KAFKA, REDIS, "METERING_API_HOST, METERING_API_PORT", LOGS],
        "METERING_API_PORT=8080 metering api --rate 100",
    ),
    "api-keys": ([KAFKA, "METERING_ACCOUNTS_TOPIC", REDIS], "metering api-keys create --admin"),
    "api-keys create": (
        [KAFKA, "METERING_ACCOUNTS_TOPIC", REDIS],
        "TOKEN=$(metering api-keys create --account acct-1)",
    ),
    "api-keys list": ([KAFKA, "METERING_ACCOUNTS_TOPIC", REDIS], "metering api-keys list"),
    "api-keys revoke": (
        [KAFKA, "METERING_ACCOUNTS_TOPIC", REDIS],
        "metering api-keys revoke k_0123abcd",
    ),
    "api-keys migrate": ([KAFKA, "METERING_ACCOUNTS_TOPIC", REDIS], "metering api-keys migrate"),
    "closer": ([KAFKA, REDIS, "METERING_REMINDER_INTERVAL_S", LOGS], "metering closer --once"),
    "remind": ([KAFKA, REDIS], "metering remind --as-of 2026-12-01T00:00:00Z"),
    "backfill": (
        [KAFKA, REDIS, "METERING_EVENTS_TOPIC"],
        "metering backfill --from 2026-11-01T00:00:00Z --redis-url redis://127.0.0.1:6379/5",
    ),
    "produce": (
        [KAFKA, "METERING_EVENTS_TOPIC", "METERING_MAX_EVENT_BYTES, METERING_MAX_FUTURE_S"],
        "metering produce events.jsonl    (deploy/demo prints the exports for its topics)",
    ),
    "usage": ([API], "metering usage acct-1 --json | jq '.meters[].state'"),
    "wait": ([API], "metering wait --account acct-1 --timeout 60"),
    "admit": ([API], "metering admit acct-1 campaign --recipients 5000"),
    "publisher": ([KAFKA, REDIS, LOGS], "metering publisher"),
    "tiers": ([API], "metering tiers mismatches --json"),
    "tiers mismatches": ([API], "metering tiers mismatches"),
}
"""Command words -> (environment variables read, example)."""


def epilog(words: str) -> str:
    variables, example = HELP[words]
    lines = ["environment:"]
    lines += [f"  {v}" for v in variables] or ["  none"]
    lines += ["", "example:", f"  {example}", "", "exit status: docs/cli.md"]
    return "\n".join(lines)


class _Formatter(argparse.HelpFormatter):
    """Wraps the description as usual; keeps indented epilog lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n  " in text:
            return "".join(indent + line + "\n" for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def add_epilogs(parser: argparse.ArgumentParser, words: str = "") -> None:
    """Give every subcommand under `parser` its epilog (KeyError: a command without one)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{words} {name}".strip()
                sub.epilog = epilog(path)
                if sub.formatter_class is argparse.HelpFormatter:
                    sub.formatter_class = _Formatter
                add_epilogs(sub, path)
