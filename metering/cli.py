"""The `metering` command: run the service's processes and operate it.

Every subcommand reads its settings from `METERING_*` variables (metering/settings.py);
`--help` on each says what it does. Kafka and Redis modules are imported inside the commands
that need them, so the domain stays importable without them and `--help` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from metering.errors import MeteringError
from metering.settings import Settings


def _processor(args: argparse.Namespace, settings: Settings) -> int:
    from streams.app import main_processor  # noqa: PLC0415 - keep Kafka out of --help

    main_processor(settings)
    return 0


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from streams.topics import ensure_topics  # noqa: PLC0415

    created = asyncio.run(ensure_topics(settings, replication=args.replication))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _plan_files(args: argparse.Namespace) -> list[Path]:
    from metering import plans_examples  # noqa: PLC0415

    files = [Path(f) for f in args.files]
    if args.examples:
        files += sorted(Path(str(plans_examples.__path__[0])).glob("*.toml"))
    if not files:
        raise MeteringError("name plan files, or --examples for the shipped ones")
    return files


def _plans_validate(args: argparse.Namespace, settings: Settings) -> int:
    from metering.plan_loading import load_plan  # noqa: PLC0415

    for path in _plan_files(args):
        plan = load_plan(path)
        print(f"ok  {path}: plan {plan.id} ({len(plan.meters)} meters)")
    return 0


def _plans_apply(args: argparse.Namespace, settings: Settings) -> int:
    from metering.plan_loading import load_plan  # noqa: PLC0415
    from sinks.config_writer import ConfigWriter  # noqa: PLC0415
    from streams.kafka import new_producer  # noqa: PLC0415

    plans = [(load_plan(path), path) for path in _plan_files(args)]

    async def apply() -> None:
        producer = new_producer(settings, client_id="metering-cli")
        await producer.start()
        try:
            writer = ConfigWriter(producer, settings.accounts_topic)
            for plan, path in plans:
                await writer.put_plan(plan.id, path.read_text(encoding="utf-8"), path.name)
                print(f"applied plan {plan.id} from {path}")
        finally:
            await producer.stop()

    asyncio.run(apply())
    return 0


def _accounts_put(args: argparse.Namespace, settings: Settings) -> int:
    from metering.account_codec import account_from_json  # noqa: PLC0415
    from sinks.config_writer import ConfigWriter  # noqa: PLC0415
    from streams.kafka import new_producer  # noqa: PLC0415

    raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    doc = orjson.loads(raw)
    accounts = [account_from_json(d) for d in (doc if isinstance(doc, list) else [doc])]

    async def put() -> None:
        producer = new_producer(settings, client_id="metering-cli")
        await producer.start()
        try:
            writer = ConfigWriter(producer, settings.accounts_topic)
            for account in accounts:
                await writer.put_account(account)
                print(f"applied account {account.id} (plan {account.plan_id})")
        finally:
            await producer.stop()

    asyncio.run(put())
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka import new_producer  # noqa: PLC0415

    stream = sys.stdin.buffer if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115

    async def produce() -> int:
        producer = new_producer(settings, client_id="metering-cli", linger_ms=20)
        await producer.start()
        sent = 0
        try:
            futures = []
            for line in stream:
                if not line.strip():
                    continue
                key = _subject(line)
                futures.append(await producer.send(settings.events_topic, value=line, key=key))
                sent += 1
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return sent

    try:
        count = asyncio.run(produce())
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    print(f"produced {count} events to {settings.events_topic}")
    return 0


def _subject(line: bytes) -> bytes | None:
    """The record key is the account (`subject`); a line that is not JSON keeps no key and the
    processor dead-letters it with the reason."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    subject = doc.get("subject") if isinstance(doc, dict) else None
    return subject.encode() if isinstance(subject, str) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metering",
        description="Exact usage metering: Kafka usage events -> Redis counters -> thresholds.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("processor", help="run a usage processor (until SIGTERM)")
    p.set_defaults(run=_processor)

    topics = sub.add_parser("topics", help="manage the service's Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    p = topics_sub.add_parser("create", help="create missing topics (partitions, retention)")
    p.add_argument("--replication", type=int, default=1, help="replication factor (default 1)")
    p.set_defaults(run=_topics_create)

    plans = sub.add_parser("plans", help="validate and apply plan files (TOML)")
    plans_sub = plans.add_subparsers(dest="plans_command", required=True, metavar="ACTION")
    for name, run, text in (
        ("validate", _plans_validate, "check plan files; errors name file, field and problem"),
        ("apply", _plans_apply, "publish plan files to the accounts topic (live update)"),
    ):
        p = plans_sub.add_parser(name, help=text)
        p.add_argument("files", nargs="*", help="plan files")
        p.add_argument("--examples", action="store_true", help="the shipped example plans")
        p.set_defaults(run=run)

    accounts = sub.add_parser("accounts", help="manage accounts")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    p = accounts_sub.add_parser("put", help="create or update accounts from JSON (file or -)")
    p.add_argument("file", help="JSON file with one account or a list, or - for stdin")
    p.set_defaults(run=_accounts_put)

    p = sub.add_parser("produce", help="produce usage events from JSON lines (file or -)")
    p.add_argument("file", nargs="?", default="-", help="JSON-lines file, or - for stdin")
    p.set_defaults(run=_produce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; errors print one clear line and exit 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        code: int = args.run(args, settings)
    except MeteringError as exc:
        print(f"metering: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
