"""The `metering` command: run the service's processes and operate it.

Every subcommand reads its settings from `METERING_*` variables (metering/settings.py);
`--help` on each says what it does. Kafka and Redis modules are imported inside the commands
that need them, so the domain stays importable without them and `--help` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from metering.cli.failures import explain
from metering.cli.helptext import add_epilogs
from metering.cli.inputs import checked_events, read_input, require_topics
from metering.cli.listing import add_commands as add_listing_commands
from metering.core.errors import InputError, MeteringError
from metering.settings import Settings

if TYPE_CHECKING:
    from metering.api.auth import KeyRing


def _processor(args: argparse.Namespace, settings: Settings) -> int:
    from metering.runtime.processor import main_processor  # noqa: PLC0415 - keep Kafka out of --help

    if args.accept_lost_records:
        settings = dataclasses.replace(settings, accept_lost_records=True)
    main_processor(settings)
    return 0


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from streams.topics import ensure_topics  # noqa: PLC0415

    created = asyncio.run(ensure_topics(settings, replication=args.replication))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _plan_files(args: argparse.Namespace) -> list[Path]:
    from metering.core import plans_examples  # noqa: PLC0415

    files = [Path(f) for f in args.files]
    if args.examples:
        files += sorted(Path(str(plans_examples.__path__[0])).glob("*.toml"))
    if not files:
        raise MeteringError("name plan files, or --examples for the shipped ones")
    return files


def _plans_validate(args: argparse.Namespace, settings: Settings) -> int:
    from metering.core.plan_loading import load_plan  # noqa: PLC0415

    for path in _plan_files(args):
        plan = load_plan(path)
        print(f"ok  {path}: plan {plan.id} ({len(plan.meters)} meters)")
    return 0


def _plans_apply(args: argparse.Namespace, settings: Settings) -> int:
    from metering.core.directory import Directory  # noqa: PLC0415
    from metering.core.plan_loading import load_plan  # noqa: PLC0415
    from sinks.config_writer import ConfigWriter  # noqa: PLC0415
    from streams.config_follower import ConfigFollower  # noqa: PLC0415
    from streams.kafka import new_consumer, new_producer, started  # noqa: PLC0415

    plans = [(load_plan(path), path) for path in _plan_files(args)]

    async def current() -> Directory:
        """The configuration in force (the accounts topic read to its end)."""
        directory = Directory()
        consumer = new_consumer(settings, group_id=None, client_id="metering-cli-config")
        async with started(consumer):
            await ConfigFollower(consumer, settings.accounts_topic, directory).catch_up()
        return directory

    async def apply() -> None:
        await require_topics(settings, ["accounts_topic"])
        directory = await current()
        dropped = [
            (plan.id, meter, accounts)
            for plan, _ in plans
            for meter, accounts in directory.removed_meters_in_use(plan).items()
        ]
        for plan, _ in plans:
            undated = directory.missing_contract_dates(plan)
            if undated:
                raise MeteringError(
                    f"plan {plan.id}: billing periods need a contract_date, which "
                    f"{_some(undated)} lack: set their contract_date first "
                    "(`metering accounts put`), then apply the plan"
                )
        for plan_id, meter, accounts in dropped:
            users = _some(accounts)
            if not args.remove_meters_in_use:
                raise MeteringError(
                    f"plan {plan_id}: meter {meter!r} is in use by {users}; its events would be "
                    "counted nowhere: keep the meter, move the accounts to another plan, or "
                    "pass --remove-meters-in-use (see docs/plans.md)"
                )
            print(
                f"warning: plan {plan_id}: removing meter {meter!r} in use by {users}: from now "
                "on their events of this meter are counted nowhere",
                file=sys.stderr,
            )
        producer = new_producer(settings, client_id="metering-cli")
        async with started(producer):
            writer = ConfigWriter(producer, settings.accounts_topic)
            for plan, path in plans:
                await writer.put_plan(plan.id, path.read_text(encoding="utf-8"), path.name)
                print(f"applied plan {plan.id} from {path}")

    asyncio.run(apply())
    return 0


def _some(accounts: list[str], shown: int = 10) -> str:
    """`3 accounts (a, b, c)`, the first `shown` named."""
    more = f", and {len(accounts) - shown} more" if len(accounts) > shown else ""
    noun = "account" if len(accounts) == 1 else "accounts"
    return f"{len(accounts)} {noun} ({', '.join(accounts[:shown])}{more})"


def _accounts_put(args: argparse.Namespace, settings: Settings) -> int:
    from metering.core.account_codec import account_from_json  # noqa: PLC0415
    from sinks.config_writer import ConfigWriter  # noqa: PLC0415
    from streams.kafka import new_producer, started  # noqa: PLC0415

    raw = read_input(args.file)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(
            f"{args.file}: not JSON ({exc}); give one account object or a list of them"
        ) from None
    accounts = [account_from_json(d) for d in (doc if isinstance(doc, list) else [doc])]

    async def put() -> None:
        await require_topics(settings, ["accounts_topic"])
        producer = new_producer(settings, client_id="metering-cli")
        async with started(producer):
            writer = ConfigWriter(producer, settings.accounts_topic)
            for account in accounts:
                await writer.put_account(account)
                print(f"applied account {account.id} (plan {account.plan_id})")

    asyncio.run(put())
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    """Validate every line first (nothing is sent when one is bad), then send with progress."""
    from metering.runtime.progress import Reporter  # noqa: PLC0415
    from streams.kafka import new_producer, started  # noqa: PLC0415

    events = checked_events(read_input(args.file), args.file, settings)

    async def produce() -> None:
        await require_topics(settings, ["events_topic"])
        producer = new_producer(settings, client_id="metering-cli", linger_ms=20)
        with Reporter("produce", len(events), None if args.quiet else sys.stderr) as bar:
            async with started(producer):
                pending = []
                for line, key in events:
                    pending.append(await producer.send(settings.events_topic, value=line, key=key))
                    if len(pending) >= 1000:
                        await asyncio.gather(*pending)
                        bar.advance(len(pending))
                        pending = []
                await asyncio.gather(*pending)
                bar.advance(len(pending))

    asyncio.run(produce())
    print(f"produced {len(events)} events to {settings.events_topic}")
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from metering.api.context import ApiConfig  # noqa: PLC0415 - keep Starlette out of --help
    from metering.runtime.api import main_api  # noqa: PLC0415

    config = ApiConfig(rate_per_s=args.rate, burst=args.burst, secure_cookie=args.secure_cookie)
    asyncio.run(_api_preflight(settings))
    main_api(settings, config, access_log=args.access_log and not args.no_access_log)
    return 0


async def _api_preflight(settings: Settings) -> None:
    """Redis answers and the accounts topic exists, checked before the server starts: a
    failure is then one line (exit 8 or 6/7) instead of the server's start-up traceback."""
    from metering.state.redis_store import RedisStateStore  # noqa: PLC0415

    store = RedisStateStore.from_url(settings.redis_url)
    try:
        await store.ping()
    finally:
        await store.close()
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the one-line failure says it; the server's logs follow
    try:
        await require_topics(settings, ["accounts_topic"])
    finally:
        quiet.setLevel(level)


def _api_keys(args: argparse.Namespace, settings: Settings) -> int:
    """create / list / revoke / migrate API keys; a new key's token is printed once.

    Records go to the accounts topic (durable; the configuration read to its end first) and
    their copies to Redis (docs/api.md, "Keys")."""
    from metering.api.auth import KeyRing  # noqa: PLC0415
    from metering.core.directory import Directory  # noqa: PLC0415
    from metering.state.redis_store import RedisStateStore  # noqa: PLC0415
    from sinks.config_writer import ConfigWriter  # noqa: PLC0415
    from streams.config_follower import ConfigFollower  # noqa: PLC0415
    from streams.kafka import new_consumer, new_producer, started  # noqa: PLC0415

    async def run() -> int:
        directory = Directory()
        consumer = new_consumer(settings, group_id=None, client_id="metering-cli-config")
        async with started(consumer):
            await ConfigFollower(consumer, settings.accounts_topic, directory).catch_up()
        store = RedisStateStore.from_url(settings.redis_url)
        producer = new_producer(settings, client_id="metering-cli")
        try:
            async with started(producer):
                writer = ConfigWriter(producer, settings.accounts_topic)
                ring = KeyRing(store, directory=directory, publisher=writer)
                return await _keys_action(args, ring)
        finally:
            await store.close()

    return asyncio.run(run())


async def _keys_action(args: argparse.Namespace, ring: KeyRing) -> int:
    """One `api-keys` action on a ring that writes to the topic and Redis."""
    from metering.api.auth import Scope  # noqa: PLC0415

    if args.keys_command == "create":
        scope = Scope.ADMIN if args.admin else Scope.ACCOUNT
        token, record = await ring.create(scope, None if args.admin else args.account)
        owner = f" of {record.account}" if record.account else ""
        print(f"created {record.id} ({scope.value}{owner}); token:", file=sys.stderr)
        print(token)  # stdout holds the token alone: TOKEN=$(metering api-keys ...)
    elif args.keys_command == "list":
        stranded = {r.id for r in (await ring.unmigrated()).values()}
        for record in await ring.records():
            note = "  (only in Redis: run `metering api-keys migrate`)" * (record.id in stranded)
            print(f"{record.id}  {record.scope.value:7}  {record.account or '-'}{note}")
    elif args.keys_command == "migrate":
        moved = await ring.migrate()
        for record in moved:
            print(f"migrated {record.id} ({record.scope.value} {record.account or '-'})")
        print(f"{len(moved)} keys moved from Redis to the accounts topic")
    else:
        if not await ring.revoke(key_id=args.key_id):
            print(f"no key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0


def _closer(args: argparse.Namespace, settings: Settings) -> int:
    """Close due periods (statements and tier placements, ADR 0004) and send due reminders,
    until SIGTERM or once."""
    from metering.runtime.closer import run_closer  # noqa: PLC0415 - keep Kafka out of --help
    from metering.runtime.process import stop_on_signals  # noqa: PLC0415

    async def run() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        report, reminded = await run_closer(settings, stop, once=args.once)
        print(
            f"closed {report.frozen} periods of {report.accounts} accounts: "
            f"{report.statements} statements, {report.tiers} tier events"
            + (f"; {report.waiting} accounts wait for an idle partition" if report.waiting else "")
            + f"; {reminded.sent} reminders sent"
        )

    asyncio.run(run())
    return 0


def _remind(args: argparse.Namespace, settings: Settings) -> int:
    """One reminder pass (docs/plans.md, "Reminders"), as of now or of `--as-of`."""
    from metering.core.rfc3339 import parse_ms  # noqa: PLC0415
    from metering.runtime.closer import remind_once  # noqa: PLC0415 - keep Kafka out of --help

    as_of_ms = None
    if args.as_of is not None:
        try:
            as_of_ms = parse_ms(args.as_of)
        except ValueError:
            raise MeteringError(f"--as-of: not an RFC 3339 time: {args.as_of!r}") from None
    report = asyncio.run(remind_once(settings, as_of_ms=as_of_ms))
    print(
        f"{report.sent} reminders sent ({report.checked} crossings checked, "
        f"{report.held} due but below the threshold now)"
    )
    return 0


def _backfill(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild counters, rollups, statements and tiers from the events topic (ADR 0004)."""
    from metering.core.rfc3339 import parse_ms  # noqa: PLC0415
    from metering.runtime.backfill import backfill  # noqa: PLC0415 - keep Kafka out of --help

    try:
        from_ms = parse_ms(args.from_time)
    except ValueError:
        raise MeteringError(f"--from: not an RFC 3339 time: {args.from_time!r}") from None
    report = asyncio.run(
        backfill(
            settings,
            from_ms=from_ms,
            target_url=args.redis_url or settings.redis_url,
            publish=args.publish,
        )
    )
    closed = report.closed
    print(
        f"replayed {report.events} events in {report.seconds:.1f}s "
        f"({report.rejected} rejected, {report.late} late); closed {closed.frozen} periods of "
        f"{closed.accounts} accounts: {closed.statements} statements, {closed.tiers} tier events"
        + ("" if report.gauges_closed else "; gauge months not closed (history not from offset 0)")
        + (f"; published {report.published}" if args.publish else "")
    )
    return 0


def _api_target(args: argparse.Namespace) -> tuple[str, str]:
    url = args.api_url or os.environ.get("METERING_API_URL", "http://127.0.0.1:8080")
    key = args.key or os.environ.get("METERING_API_KEY", "")
    if not key:
        raise MeteringError("an API key is needed: --key or METERING_API_KEY")
    return url, key


def _colour(args: argparse.Namespace) -> bool:
    return args.color == "always" or (args.color == "auto" and sys.stdout.isatty())


def _usage(args: argparse.Namespace, settings: Settings) -> int:
    from metering.cli.console import call_api, usage_table  # noqa: PLC0415

    url, key = _api_target(args)
    usage = call_api(url, key, "GET", f"/v1/accounts/{args.account}/usage")
    print(_json(usage) if args.json else usage_table(usage, colour=_colour(args)))
    return 0


WAIT_TIMED_OUT = 3
"""Exit status of `metering wait` when the timeout passed first (2: an error)."""


def _wait(args: argparse.Namespace, settings: Settings) -> int:
    from metering.cli.console import call_api, wait_report  # noqa: PLC0415

    if not 0 <= args.timeout <= 300:
        raise MeteringError(f"--timeout must be between 0 and 300 seconds, got {args.timeout:g}")
    url, key = _api_target(args)
    path = "/v1/wait" if args.account is None else f"/v1/accounts/{args.account}/wait"
    result = call_api(
        url,
        key,
        "GET",
        f"{path}?timeout_ms={int(args.timeout * 1000)}",
        timeout_s=args.timeout + 10,
        accept=(504,),
    )
    print(wait_report(result))
    return 0 if result.get("caught_up") else WAIT_TIMED_OUT


def _admit(args: argparse.Namespace, settings: Settings) -> int:
    from metering.cli.console import call_api, decisions_table  # noqa: PLC0415

    url, key = _api_target(args)
    body: dict[str, object]
    if args.what == "messages":
        body = {"contacts": args.items, "kind": args.kind}
    elif args.what == "contacts":
        body = {"contacts": args.items, "origin": args.origin}
    elif args.what == "automations":
        body = {"contacts": args.items, "contacts_via_api": args.via_api}
    elif args.what == "campaign":
        body = {
            "action": "campaign.send",
            "recipients": args.recipients,
            "contacts_via_api": args.via_api,
        }
    else:
        body = {"messages": args.recipients}
    path = {"campaign": "campaigns"}.get(args.what, args.what)
    result = call_api(url, key, "POST", f"/v1/accounts/{args.account}/admission/{path}", body)
    print(_json(result) if args.json else decisions_table(result, colour=_colour(args)))
    return 0


def _tiers_mismatches(args: argparse.Namespace, settings: Settings) -> int:
    from metering.cli.console import call_api, mismatches_table  # noqa: PLC0415

    url, key = _api_target(args)
    report = call_api(url, key, "GET", "/v1/admin/tier-mismatches")
    print(_json(report) if args.json else mismatches_table(report))
    return 0


def _json(answer: object) -> str:
    """The API's answer as indented JSON (`--json`), for scripts and `jq`."""
    return orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()


def _publisher(args: argparse.Namespace, settings: Settings) -> int:
    from metering.runtime.publisher import main_publisher  # noqa: PLC0415

    main_publisher(settings)
    return 0


def _add_api_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", help="API base URL (METERING_API_URL, default 127.0.0.1:8080)")
    p.add_argument("--key", help="API key (METERING_API_KEY)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer instead")


def _add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`produce`, `usage`, `wait`, `admit` (through the API) and `publisher`."""
    p = sub.add_parser("produce", help="produce usage events from JSON lines (file or -)")
    p.add_argument("file", nargs="?", default="-", help="JSON-lines file, or - for stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or lines")
    p.set_defaults(run=_produce)

    p = sub.add_parser(
        "usage",
        help="an account's usage as a table with coloured status",
        description="Status words (the API's `state`, the dashboard's labels): ok; at risk "
        "(a threshold reached below the limit); at limit (used = limit); over (strictly above "
        "the limit); no credits (a prepaid balance at 0). The colour is the plan's thresholds'.",
    )
    p.add_argument("account")
    _add_api_client_options(p)
    p.set_defaults(run=_usage)

    p = sub.add_parser(
        "wait",
        help="wait until every event produced before now is counted (exit 3 on timeout)",
        description="Wait until the processor applied every event produced to the events "
        "topic before this call (with --account: to that account's partition). Exit status: "
        "0 caught up, 3 the timeout passed first (the records left are printed), 2 an error.",
    )
    p.add_argument("--account", help="only this account's partition (its key suffices)")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait at most, up to 300 (30; 0: check once)",
    )
    _add_api_client_options(p)
    p.set_defaults(run=_wait)

    p = sub.add_parser(
        "admit",
        help="ask whether an account may do something now",
        description="Prints a summary line (allowed or refused, how many admitted, the "
        "deciding reason and meter, how many more would fit), then one line per item. "
        "See docs/api.md, Admission.",
    )
    p.add_argument("account")
    p.add_argument(
        "what",
        choices=["messages", "contacts", "automations", "campaign", "sms"],
        help="messages/contacts/automations: for the given contacts (an import is admitted "
        "all or nothing); campaign/sms: --recipients of them",
    )
    p.add_argument("items", nargs="*", help="contact ids (messages, contacts, automations)")
    p.add_argument("--kind", default="marketing", help="e-mail kind (messages)")
    p.add_argument("--origin", default="api", help="api, form, import or manual (contacts)")
    p.add_argument("--recipients", type=int, default=1, help="campaign recipients / SMS count")
    p.add_argument(
        "--via-api",
        action="store_true",
        help="campaign, automations: the contacts came in through the API (110 %% ceiling)",
    )
    _add_api_client_options(p)
    p.set_defaults(run=_admit)

    p = sub.add_parser(
        "publisher",
        help="run a standalone outbox publisher (until SIGTERM)",
        description="Publishes the crossings, reminders, statements and tier events waiting "
        "in Redis outboxes, in Kafka transactions (every processor runs one too; this one "
        "is for deployments that separate them).",
    )
    p.set_defaults(run=_publisher, service=True)

    tiers = sub.add_parser("tiers", help="tier placements across accounts (through the API)")
    tiers_sub = tiers.add_subparsers(dest="tiers_command", required=True, metavar="ACTION")
    p = tiers_sub.add_parser(
        "mismatches",
        help="accounts whose 3-month average places them in another tier than they pay for "
        "(paid_tiers), with the months behind it (admin key)",
    )
    _add_api_client_options(p)
    p.set_defaults(run=_tiers_mismatches)


_APPLY_HELP = """.

The accounts topic is read first. A plan that adds billing periods while accounts on it have
no contract_date is refused, naming them. A plan that drops a meter while accounts are on the
plan is refused, naming the meter and the accounts, unless --remove-meters-in-use is given. When
forced, the events that fed only that meter are still consumed but counted nowhere (they
still count in the plan's other meters, and every processor and API logs the removal as a
warning); the meter's counters are left in Redis as they are and expire with their periods.
The events themselves stay on the events topic for its retention. Adding the meter back
counts new events again; events in between are not counted. See docs/plans.md.
"""


def _add_plans_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """`plans validate` and `plans apply` (`plans list`: metering/cli/listing.py)."""
    plans = sub.add_parser("plans", help="validate and apply plan files (TOML)")
    plans_sub = plans.add_subparsers(dest="plans_command", required=True, metavar="ACTION")
    for name, run, text in (
        ("validate", _plans_validate, "check plan files; errors name file, field and problem"),
        ("apply", _plans_apply, "publish plan files to the accounts topic (live update)"),
    ):
        p = plans_sub.add_parser(
            name,
            help=text,
            description=text + (_APPLY_HELP if name == "apply" else ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("files", nargs="*", help="plan files")
        p.add_argument("--examples", action="store_true", help="the shipped example plans")
        if name == "apply":
            p.add_argument(
                "--remove-meters-in-use",
                action="store_true",
                help="apply even when a plan drops meters that accounts on it use "
                "(their events are then counted nowhere; see below)",
            )
        p.set_defaults(run=run)
    return plans_sub


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("metering")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """`--debug` (alias `-v`, `--verbose`) and `--version`."""
    parser.add_argument(
        "-v",
        "--verbose",
        "--debug",
        dest="debug",
        action="store_true",
        help="log at DEBUG level and print the traceback of a failure",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metering",
        description="Exact usage metering: Kafka usage events -> Redis counters -> thresholds.",
        epilog="exit status: 0 done; 1 not found; 2 refused or a usage error; 3 wait timed "
        "out; 4 bad setting; 5 bad input file; 6 Kafka unreachable; 7 topic missing; 8 Redis "
        "unreachable; 9 API unreachable (docs/cli.md). `metering --debug COMMAND` adds the "
        "traceback of a failure.",
    )
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "processor",
        help="run a usage processor (until SIGTERM)",
        description="Consumes the usage topic, applies each batch to the Redis counters "
        "(effectively once: positions live in Redis), and publishes threshold crossings, "
        "reminders, statements and tier events from the outboxes. Several processors share "
        "the partitions (METERING_CONSUMER_GROUP). Metrics on 127.0.0.1:METERING_METRICS_PORT.",
    )
    p.add_argument(
        "--accept-lost-records",
        action="store_true",
        help="when retention deleted records not applied yet, log and count the lost range "
        "(metering_records_lost_total) and go on from the log start, instead of stopping "
        "(METERING_ACCEPT_LOST_RECORDS)",
    )
    p.set_defaults(run=_processor, service=True)

    topics = sub.add_parser("topics", help="manage the service's Kafka topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    p = topics_sub.add_parser("create", help="create missing topics (partitions, retention)")
    p.add_argument("--replication", type=int, default=1, help="replication factor (default 1)")
    p.set_defaults(run=_topics_create)

    plans_sub = _add_plans_commands(sub)

    accounts = sub.add_parser("accounts", help="manage accounts")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")
    p = accounts_sub.add_parser("put", help="create or update accounts from JSON (file or -)")
    p.add_argument("file", help="JSON file with one account or a list, or - for stdin")
    p.set_defaults(run=_accounts_put)
    add_listing_commands(sub, accounts_sub, plans_sub)

    p = sub.add_parser(
        "api",
        help="run the HTTP API and dashboard (METERING_API_HOST/PORT)",
        description="Serves usage, admission and the dashboard (docs/api.md) on "
        "METERING_API_HOST:METERING_API_PORT until SIGTERM. Redis and the accounts topic are "
        "checked before it listens (exit 8 or 6/7 in one line when they are not there).",
    )
    p.add_argument("--rate", type=float, default=50.0, help="requests/s per API key (50)")
    p.add_argument("--burst", type=int, default=100, help="burst per API key (100)")
    p.add_argument("--secure-cookie", action="store_true", help="served over HTTPS")
    p.add_argument(
        "--access-log",
        action="store_true",
        help="one log line per request (off by default: ~0.1 ms of CPU per request; "
        "/metrics counts requests by route and status)",
    )
    p.add_argument("--no-access-log", action="store_true", help="the default (kept for scripts)")
    p.set_defaults(run=_api, service=True)

    _add_api_keys_commands(sub)
    _add_service_commands(sub)
    _add_client_commands(sub)
    add_epilogs(parser)
    return parser


def _add_api_keys_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("api-keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = keys_sub.add_parser("create", help="create a key and print its token once")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", help="a key that reads this account only")
    who.add_argument("--admin", action="store_true", help="a key for plan/account changes")
    p.set_defaults(run=_api_keys)
    p = keys_sub.add_parser("list", help="list keys (ids and scopes; tokens are not stored)")
    p.set_defaults(run=_api_keys)
    p = keys_sub.add_parser("revoke", help="revoke a key by its id (k_...)")
    p.add_argument("key_id")
    p.set_defaults(run=_api_keys)
    p = keys_sub.add_parser(
        "migrate",
        help="once, after upgrading: copy keys kept only in Redis to the accounts topic",
    )
    p.set_defaults(run=_api_keys)


def _add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The closer, reminders and backfill."""
    p = sub.add_parser(
        "closer",
        help="close due periods (statements, tiers) and send due reminders (until SIGTERM)",
    )
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.set_defaults(run=_closer, service=True)

    p = sub.add_parser("remind", help="send the reminders due now (one pass; docs/plans.md)")
    p.add_argument(
        "--as-of",
        metavar="TIME",
        help="send what is due by this time (RFC 3339) instead of now: for demos and tests; "
        "reminders sent early are not sent again",
    )
    p.set_defaults(run=_remind)

    p = sub.add_parser("backfill", help="rebuild rollups, statements and tiers from Kafka")
    p.add_argument(
        "--from",
        dest="from_time",
        metavar="TIME",
        required=True,
        help="replay records appended from this time (RFC 3339); close periods starting then",
    )
    p.add_argument("--redis-url", help="target Redis, empty (default: METERING_REDIS_URL)")
    p.add_argument("--publish", action="store_true", help="send statements and tiers to Kafka")
    p.set_defaults(run=_backfill)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: an expected failure prints one line (`metering: problem; fix`)
    and exits with its status (docs/cli.md); `--debug` adds the traceback."""
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        _configure_logging(args, settings)
        code: int = args.run(args, settings)
    except KeyboardInterrupt:
        print("metering: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        failure = explain(exc, settings)
        if failure is None:
            raise
        if args.debug:
            traceback.print_exc()
        # Clients a failed start left behind are reported by asyncio when collected: noise.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        print(f"metering: {failure.line}", file=sys.stderr)
        return int(failure.code)
    return code


def _configure_logging(args: argparse.Namespace, settings: Settings) -> None:
    """Our log format and level; a one-shot command (not a service) also hides aiokafka's
    connection errors, which the one-line failure replaces (`--debug` shows them)."""
    from metering.runtime.logging import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_level, settings.log_format, debug=args.debug)
    if not args.debug and not getattr(args, "service", False):
        for name in ("aiokafka", "kafka"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


if __name__ == "__main__":
    sys.exit(main())
