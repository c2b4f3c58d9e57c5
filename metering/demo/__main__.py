"""`python -m metering.demo`: run the demo (see metering/demo/__init__.py); `stop` ends the
processor and API a previous demo left running."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
import urllib.request
from dataclasses import fields, replace
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from metering.api.auth import KeyRing, Scope
from metering.cli.console import call_api, decisions_table, usage_table, wait_report
from metering.client import UsageProducer
from metering.core.account_codec import account_from_json
from metering.core.directory import Directory
from metering.core.periods import DAY_MS
from metering.core.plan_loading import load_plan
from metering.core.ports import wall_clock_ms
from metering.core.rfc3339 import format_ms, parse_ms
from metering.demo.scenario import CLERK_MONTHS, DemoAccounts, clerk_history, live_traffic
from metering.demo.services import Services, stop_all
from metering.runtime.closer import remind_once
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from sinks.config_writer import ConfigWriter
from streams.kafka import new_producer
from streams.topics import ensure_topics

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".state" / "demo"
COLOUR = sys.stdout.isatty()


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_settings(base: Settings, run: str) -> Settings:
    """Fresh topics and group for this run (a new log starts with its watermark at zero, so
    the three past months of the tier demo are on time)."""
    return replace(
        base,
        events_topic=f"demo.{run}.usage-events",
        dead_letter_topic=f"demo.{run}.dead-letter",
        late_topic=f"demo.{run}.late-events",
        thresholds_topic=f"demo.{run}.thresholds",
        accounts_topic=f"demo.{run}.accounts",
        statements_topic=f"demo.{run}.period-statements",
        tiers_topic=f"demo.{run}.tier-placements",
        reminders_topic=f"demo.{run}.reminders",
        publisher_progress_topic=f"demo.{run}.publisher-progress",
        publisher_transactional_id=f"demo-{run}-publisher",
        consumer_group=f"demo-{run}",
        events_partitions=3,
    )


CLI_FIELDS = (
    "kafka_bootstrap",
    "redis_url",
    *(f.name for f in fields(Settings) if f.name.endswith("_topic")),
    "consumer_group",
)
"""The settings a `metering` command in another shell needs to work on this run's topics."""


def cli_exports(settings: Settings, api: str, admin_key: str) -> list[str]:
    """`export` lines that point the `metering` command at this run: its per-run topics, its
    Kafka and Redis, and its API with the admin key (`metering usage`, `wait`, `admit`)."""
    lines = [
        f"export METERING_{name.upper()}={shlex.quote(str(getattr(settings, name)))}"
        for name in CLI_FIELDS
    ]
    lines.append(f"export METERING_API_URL={shlex.quote(api)}")
    lines.append(f"export METERING_API_KEY={shlex.quote(admin_key)}")
    return lines


def describe(topic_kind: str, body: dict[str, object]) -> str | None:
    """One line for an output event, as billing would see it."""
    if topic_kind == "thresholds":
        return (
            f"  threshold  {body['account']}: {body['meter']} {body['threshold']} "
            f"({body['used']:,} of {body['limit']:,}, period {body['period'] or 'now'})"
        )
    if topic_kind == "reminders":
        return (
            f"  reminder   {body['account']}: {body['meter']} {body['threshold']} "
            f"#{body['number']} ({body['used']:,} of {body['limit']:,}, due {body['due_at']})"
        )
    if topic_kind == "tiers":
        months = ", ".join(f"{m['period']}: {m['total']:,}" for m in body["months"])  # type: ignore[attr-defined]
        return (
            f"  tier       {body['account']}: {body['ladder']} -> up to {body['up_to']:,} "
            f"(average {body['average_display']} of {months}"
            f"{'' if body['complete'] else ', fewer than 3 months'})"
        )
    if topic_kind == "statements" and str(body.get("account", "")).startswith("clerk"):
        return (
            f"  statement  {body['account']}: {body['meter']} {body['period']} = {body['total']:,}"
        )
    return None


async def watch(settings: Settings, stop: asyncio.Event, seen: dict[str, int]) -> None:
    """Print threshold, tier and statement events as they arrive."""
    topics = {
        settings.thresholds_topic: "thresholds",
        settings.tiers_topic: "tiers",
        settings.statements_topic: "statements",
        settings.reminders_topic: "reminders",
    }
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",  # as billing reads: published messages only, once
    )
    await consumer.start()
    try:
        while not stop.is_set():
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                kind = topics[tp.topic]
                for record in records:
                    seen[kind] = seen.get(kind, 0) + 1
                    line = describe(kind, orjson.loads(record.value))
                    if line:
                        say(line)
    finally:
        await consumer.stop()


async def configure(settings: Settings, accounts: DemoAccounts, now_ms: int) -> None:
    """Topics, the example plans and the run's accounts."""
    await ensure_topics(settings)
    producer = new_producer(settings, client_id="metering-demo")
    await producer.start()
    writer = ConfigWriter(producer, settings.accounts_topic)
    plans = sorted((REPO / "metering" / "core" / "plans_examples").glob("*.toml"))
    for path in plans:
        plan = load_plan(path)
        await writer.put_plan(plan.id, path.read_text(encoding="utf-8"), path.name)
    await writer.put_accounts([account_from_json(d) for d in accounts.documents(now_ms)])
    await producer.stop()
    say(f"== plans: {', '.join(p.stem for p in plans)}; accounts: {', '.join(accounts.all())}")


async def api_keys(settings: Settings, accounts: DemoAccounts) -> tuple[str, dict[str, str]]:
    """An admin key and one key per account (tokens shown once; their digests on the accounts
    topic, copies in Redis: docs/api.md, "Where keys live")."""
    store = RedisStateStore.from_url(settings.redis_url)
    producer = new_producer(settings, client_id="metering-demo-keys")
    await producer.start()
    try:
        writer = ConfigWriter(producer, settings.accounts_topic)
        ring = KeyRing(store, directory=Directory(), publisher=writer)
        admin, _ = await ring.create(Scope.ADMIN)
        keys = {a: (await ring.create(Scope.ACCOUNT, a))[0] for a in accounts.all()}
    finally:
        await producer.stop()
        await store.close()
    return admin, keys


async def main(base: Settings) -> None:
    run = time.strftime("%m%d%H%M%S")
    settings = run_settings(base, run)
    state = STATE / run
    state.mkdir(parents=True, exist_ok=True)
    accounts = DemoAccounts(run)
    now_ms = wall_clock_ms()
    say(f"== metering demo, run {run} (state and logs in {state})")

    await configure(settings, accounts, now_ms)
    admin, keys = await api_keys(settings, accounts)

    services = Services(state, settings)
    services.start("processor", "processor")
    services.start("api", "api")
    services.wait_for_log("processor", "processor running")
    api = f"http://{settings.api_host}:{settings.api_port}"
    services.wait_for_http(f"{api}/readyz")  # Redis answers and the processor took the store
    say(f"== processor and API running (API {api})")

    stop = asyncio.Event()
    seen: dict[str, int] = {}
    watcher = asyncio.create_task(watch(settings, stop, seen))
    async with UsageProducer.connect(
        settings.kafka_bootstrap, source="demo", topic=settings.events_topic, linger_ms=20
    ) as usage:
        say(f"== Clerk.io: {sum(CLERK_MONTHS):,} searches over the three months before this one")
        await usage.send_many(list(clerk_history(usage, accounts.clerk, now_ms)))
        say("== APSIS, Actito, ActiveCampaign, Clerk.io: this month's traffic")
        await usage.send_many(list(live_traffic(usage, accounts)))
        # Admission answers from the counts: ask only once the traffic above is counted.
        await asyncio.to_thread(counted, api, admin)
        admission_stories(api, admin, keys, accounts)
        say("== Act-On: the 10 admitted contacts are messaged (email.sent events)")
        await usage.send_many(
            [
                usage.build("email.sent", accounts.acton, contact=f"c{i}", kind="marketing")
                for i in range(1, 11)
            ]
        )
    await asyncio.to_thread(counted, api, admin)
    await wait_for_events(seen, thresholds=9, tiers=1)
    as_of = format_ms(now_ms + 15 * DAY_MS + 300_000)
    say(f"== ActiveCampaign, 15 days later: metering remind --as-of {as_of}")
    await remind_once(settings, as_of_ms=parse_ms(as_of))
    await wait_for_events(seen, thresholds=9, tiers=1, reminders=1)
    stop.set()
    await watcher

    for account in accounts.all():
        say("")
        say(
            usage_table(
                call_api(api, keys[account], "GET", f"/v1/accounts/{account}/usage"), colour=COLOUR
            )
        )
    say("")
    say(f"Dashboard (Act-On account): {api}/dashboard#key={keys[accounts.acton]}")
    say(f"Other accounts: {api}/dashboard#key=<key>; keys are in {state / 'keys.json'}")
    (state / "keys.json").write_text(json.dumps({"admin": admin, **keys}, indent=2))
    (state / "keys.json").chmod(0o600)
    exports = cli_exports(settings, api, admin)
    (state / "env").write_text("\n".join(exports) + "\n")
    (state / "env").chmod(0o600)
    say("")
    say(f"Point `metering` at this run's topics (or: source {state / 'env'}):")
    say("\n".join(exports))
    say("The processor and the API keep running; `deploy/demo stop` stops them.")


def admission_stories(api: str, admin: str, keys: dict[str, str], accounts: DemoAccounts) -> None:
    """The enforcement paths, asked of the API as an application would."""

    def ask(account: str, what: str, body: dict[str, object], title: str) -> None:
        say(f"== {title}")
        result = call_api(
            api, keys[account], "POST", f"/v1/accounts/{account}/admission/{what}", body
        )
        say("\n".join("  " + line for line in decisions_table(result, colour=COLOUR).splitlines()))

    ask(
        accounts.acton,
        "messages",
        {"contacts": [f"c{i}" for i in range(1, 13)]},
        "Act-On: send to c1..c12 with 10 active contacts allowed",
    )
    ask(
        accounts.acton,
        "messages",
        {"contacts": ["c1", "c13"]},
        "Act-On: c1 (already active) and c13 (new) later in the month",
    )
    ask(
        accounts.ac,
        "contacts",
        {"contacts": ["n1", "n2"], "origin": "import"},
        "ActiveCampaign at 110%: a CSV import of 2 new contacts (refused whole: all or nothing)",
    )
    ask(
        accounts.ac,
        "contacts",
        {"contacts": ["n3"], "origin": "form"},
        "ActiveCampaign at 110%: a form submission",
    )
    ask(
        accounts.ac,
        "campaigns",
        {"action": "campaign.send", "recipients": 22, "contacts_via_api": True},
        "ActiveCampaign at 110% (contacts came by API): send a campaign",
    )
    ask(
        accounts.ac,
        "automations",
        {"contacts": ["n1", "n2"], "contacts_via_api": True},
        "ActiveCampaign at 110% (contacts came by API): trigger an automation for 2 contacts",
    )
    ask(
        accounts.actito,
        "campaigns",
        {"action": "campaign.send", "recipients": 5},
        "Actito over its interactions: advisory, never blocked",
    )
    say("== APSIS: top up 50 SMS credits (45 already spent), then ask for 10 SMS")
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{api}/v1/accounts/{accounts.apsis}/sms-credits",
        method="POST",
        data=json.dumps({"credits": 50}).encode(),
        headers={
            "Authorization": f"Bearer {admin}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"demo-topup-{accounts.run}",
        },
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass
    counted(api, keys[accounts.apsis], accounts.apsis)  # the top-up is an event too
    ask(accounts.apsis, "sms", {"messages": 10}, "APSIS: 10 SMS with 5 credits left")


def counted(api: str, key: str, account: str | None = None) -> None:
    """Wait (`GET /v1/wait`, or the account's) until every event produced so far is counted."""
    path = "/v1/wait" if account is None else f"/v1/accounts/{account}/wait"
    result = call_api(api, key, "GET", f"{path}?timeout_ms=60000", timeout_s=70, accept=(504,))
    say("  " + wait_report(result))
    if not result["caught_up"]:
        raise RuntimeError(f"the processor did not catch up: {result['detail']}")


async def wait_for_events(
    seen: dict[str, int], *, thresholds: int, tiers: int, reminders: int = 0
) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if (
            seen.get("thresholds", 0) >= thresholds
            and seen.get("tiers", 0) >= tiers
            and seen.get("reminders", 0) >= reminders
        ):
            return
        await asyncio.sleep(0.5)
    say(f"(still waiting for events after 90 s: {seen})")


if __name__ == "__main__":
    if sys.argv[1:] == ["stop"]:
        stopped = stop_all(STATE)
        say("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        asyncio.run(main(Settings.from_env()))
