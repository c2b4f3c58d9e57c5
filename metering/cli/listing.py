"""`metering accounts list`, `metering plans list` and `metering tail`: read Kafka, print.

For operators without kcat: the configuration in force (the accounts topic read to its end, as
every processor and API reads it) and the records leaving on the outgoing topics, as tables
on a terminal or JSON (`--json`, one document; `tail`: one JSON object per line).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from metering.cli.inputs import require_topics
from metering.core.account_codec import account_to_json
from metering.core.directory import Directory
from metering.settings import Settings

TAILS = {
    "thresholds": "thresholds_topic",
    "statements": "statements_topic",
    "tiers": "tiers_topic",
    "reminders": "reminders_topic",
    "dead-letter": "dead_letter_topic",
    "late": "late_topic",
    "events": "events_topic",
}
"""`metering tail WHICH` -> the Settings field naming the topic."""


async def _directory(settings: Settings) -> Directory:
    from streams.config_follower import ConfigFollower  # noqa: PLC0415
    from streams.kafka import new_consumer, started  # noqa: PLC0415

    await require_topics(settings, ["accounts_topic"])
    directory = Directory()
    consumer = new_consumer(settings, group_id=None, client_id="metering-cli-config")
    async with started(consumer):
        await ConfigFollower(consumer, settings.accounts_topic, directory).catch_up()
    return directory


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def accounts_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every account in force: id, plan, contract date, timezone, overrides."""
    directory = asyncio.run(_directory(settings))
    accounts = sorted(directory.accounts(), key=lambda a: a.id)
    if args.json:
        docs = [account_to_json(a) for a in accounts]
        print(orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode())  # noqa: T201
        return 0
    rows = [("account", "plan", "contract date", "timezone", "limit overrides")]
    rows += [
        (
            a.id,
            a.plan_id,
            str(a.contract_date or "-"),
            a.timezone or "(plan's)",
            ", ".join(f"{m}={v:,}" for m, v in sorted(a.limit_overrides.items())) or "-",
        )
        for a in accounts
    ]
    print(_table(rows) + f"\n{len(accounts)} accounts on {settings.accounts_topic}")  # noqa: T201
    return 0


def plans_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every plan in force: id, name, meters, how many accounts are on it."""
    directory = asyncio.run(_directory(settings))
    on_plan: dict[str, int] = {}
    for account in directory.accounts():
        on_plan[account.plan_id] = on_plan.get(account.plan_id, 0) + 1
    plans = sorted(directory.plans(), key=lambda p: p.id)
    if args.json:
        docs: list[dict[str, Any]] = [
            {
                "id": p.id,
                "name": p.name,
                "meters": [m.name for m in p.meters],
                "accounts": on_plan.get(p.id, 0),
            }
            for p in plans
        ]
        print(orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode())  # noqa: T201
        return 0
    rows = [("plan", "name", "accounts", "meters")]
    rows += [
        (p.id, p.name, str(on_plan.get(p.id, 0)), ", ".join(m.name for m in p.meters))
        for p in plans
    ]
    print(_table(rows) + f"\n{len(plans)} plans on {settings.accounts_topic}")  # noqa: T201
    return 0


def tail(args: argparse.Namespace, settings: Settings) -> int:
    """Print records of an outgoing topic as JSON lines (key, partition, offset, value)."""
    return asyncio.run(_tail(args, settings))


async def _tail(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka import TopicPartition  # noqa: PLC0415

    from streams.kafka import new_consumer, new_producer, started  # noqa: PLC0415

    field = TAILS[args.which]
    topic: str = getattr(settings, field)
    await require_topics(settings, [field])
    consumer = new_consumer(settings, group_id=None, client_id="metering-cli-tail")
    metadata = new_producer(settings, client_id="metering-cli-tail")  # partitions_for: public
    printed = 0
    async with started(metadata, consumer):
        tps = [TopicPartition(topic, p) for p in sorted(await metadata.partitions_for(topic))]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if args.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, max(0, ends[tp] - args.last))
        while args.count is None or printed < args.count:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in sorted(batches.items(), key=lambda b: b[0].partition):
                for record in records:
                    print(_line(tp.partition, record), flush=True)  # noqa: T201
                    printed += 1
                    if args.count is not None and printed >= args.count:
                        return 0
            if not args.follow and await _at_end(consumer, ends):
                break
    if printed == 0:
        print(f"no records on {topic}", file=sys.stderr)  # noqa: T201
    return 0


async def _at_end(consumer: Any, ends: dict[Any, int]) -> bool:
    """Every partition read up to the end offsets seen at start."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def _line(partition: int, record: Any) -> str:
    value: object
    try:
        value = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        value = record.value.decode("utf-8", "replace")
    doc: dict[str, object] = {
        "partition": partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "value": value,
    }
    if record.headers:  # the dead-letter and late topics' reasons travel in headers
        doc["headers"] = {k: v.decode("utf-8", "replace") for k, v in record.headers}
    return orjson.dumps(doc).decode()


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    accounts_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    plans_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """`accounts list`, `plans list` and `tail` on the parser."""
    p = accounts_sub.add_parser("list", help="the accounts in force (from the accounts topic)")
    p.add_argument("--json", action="store_true", help="the accounts as a JSON list")
    p.set_defaults(run=accounts_list)
    p = plans_sub.add_parser("list", help="the plans in force, with how many accounts each")
    p.add_argument("--json", action="store_true", help="the plans as a JSON list")
    p.set_defaults(run=plans_list)
    p = sub.add_parser(
        "tail",
        help="print records of a topic as JSON lines (thresholds, statements, tiers...)",
        description="Prints one JSON object per record: partition, offset, key, the value "
        "(parsed JSON) and the headers when there are (the dead-letter reason). "
        "By default the last --last records of each partition, then exits; "
        "--follow keeps printing new records until Ctrl-C.",
    )
    p.add_argument("which", choices=sorted(TAILS), help="which topic (its METERING_*_TOPIC)")
    p.add_argument("--from-beginning", action="store_true", help="every record kept")
    p.add_argument("--last", type=int, default=10, help="records per partition to start with (10)")
    p.add_argument("-f", "--follow", action="store_true", help="wait for new records")
    p.add_argument("-n", "--count", type=int, help="stop after this many records")
    p.set_defaults(run=tail)
