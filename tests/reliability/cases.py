"""The fault cases: each streams a known event set, injects one kind of fault mid-stream, lets a
processor catch up, waits until the outboxes are drained, and compares everything with the
truth (tests/reliability/workload.py).

Shared by the test suite (`test_faults.py`, reduced `Scale`) and the full-length runner
(`run_faults.py`). A case owns everything it uses: topics it creates (and deletes), a private
Redis in a temporary folder (AOF on, fsync always), processor subprocesses
(`python -m metering.cli processor`), for the broker case a private Kafka, and for the
leader-change case a private three-node Kafka cluster. Every wait is bounded; a case that
cannot finish raises instead of hanging.

Faults per case (counted in `CaseResult.faults`):

| case | fault |
|---|---|
| `baseline` | none: the control |
| `sigkill` | processor SIGKILLed at random points (starting, joining, mid-batch, publishing) |
| `redis_restart` | private Redis stopped (SIGTERM or SIGKILL) and started again on its AOF |
| `redis_outage` | private Redis unreachable for several seconds: paused (SIGSTOP) or down |
| `kafka_restart` | private broker stopped and started again (stack.sh stop/start/wait) |
| `leader_change` | private 3-node cluster (RF 3): partition leaders SIGKILLed, preferred election |
| `rebalance` | up to three processors joining and leaving (SIGTERM or SIGKILL) |
| `redis_flushed_while_down` | FLUSHALL while no processor runs; restart rebuilds from the log |
| `redis_flushed_while_running` | FLUSHALL under a running processor: StateLost, no count from 0 |
| `redis_restored_from_backup` | Redis restored from an older backup under a running processor |
| `log_start_deleted` | Redis emptied and the log's start deleted: StateLost, exit non-zero |
| `publisher_kills` | processor SIGKILLed the moment its publisher writes to the thresholds topic |
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from metering.core.errors import StateStoreUnavailable
from metering.settings import Settings
from metering.state.keys import REBUILDING
from metering.state.redis_store import RedisStateStore
from tests.integration.harness import ProcessorProcess, caught_up, outboxes_drained
from tests.reliability.infra import PrivateKafka, PrivateKafkaCluster, PrivateRedis
from tests.reliability.workload import (
    PLAN_ID,
    StreamProducer,
    Truth,
    Verdict,
    Workload,
    case_settings,
    compare,
    create_topics,
    delete_topics,
    month_of,
    publish_config,
)

ACCOUNTS = [f"acct-{i:02d}" for i in range(40)]


@dataclass(frozen=True)
class Scale:
    """How long each case runs: the test suite uses `REDUCED`, the runner `FULL`."""

    events: int
    """Records streamed per case."""
    stream_s: float
    """Over about this many seconds."""
    kills: int
    redis_restarts: int
    redis_outages: int
    kafka_restarts: int
    membership_changes: int
    outage_s: float = 6.0
    """How long Redis stays unreachable (longer than the client's 5 s socket timeout)."""
    catch_up_s: float = 240
    leader_changes: int = 2
    """Partition leaders SIGKILLed on the three-node cluster (`leader_change`)."""


REDUCED = Scale(
    events=2500,
    stream_s=10,
    kills=3,
    redis_restarts=2,
    redis_outages=2,
    kafka_restarts=1,
    membership_changes=5,
    outage_s=5.5,
    catch_up_s=180,
    leader_changes=2,
)
FULL = Scale(
    events=30_000,
    stream_s=90,
    kills=24,
    redis_restarts=8,
    redis_outages=6,
    kafka_restarts=4,
    membership_changes=16,
    outage_s=7.0,
    catch_up_s=600,
    leader_changes=6,
)


@dataclass
class CaseResult:
    """What a case did and found; `ok` when everything matched the truth exactly."""

    name: str
    faults: dict[str, int] = field(default_factory=dict)
    verdict: Verdict | None = None
    wall_s: float = 0.0
    processors_started: int = 0
    notes: list[str] = field(default_factory=list)
    expectation_failures: list[str] = field(default_factory=list)
    """Checks specific to the case (e.g. "the processor stayed up"), failed."""

    @property
    def ok(self) -> bool:
        exact = self.verdict is None or self.verdict.exact
        return exact and not self.expectation_failures

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.expectation_failures.append(message)

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in self.faults.items()) or "none"
        head = (
            f"[{'PASS' if self.ok else 'FAIL'}] {self.name}: faults {faults}; "
            f"{self.processors_started} processor starts; {self.wall_s:.0f} s"
        )
        lines = [head]
        if self.verdict is not None:
            lines.append("    " + self.verdict.summary())
        lines += [f"    note: {n}" for n in self.notes]
        lines += [f"    FAILED: {f}" for f in self.expectation_failures]
        return "\n".join(lines)


class Case:
    """One case's resources: topics, a private Redis, processors, the truth and a stream."""

    def __init__(
        self,
        name: str,
        bootstrap: str,
        folder: Path,
        seed: int,
        *,
        partitions: int = 3,
        replication: int = 1,
        codecs: tuple[str | None, ...] = (None,),
    ) -> None:
        self.name = name
        self.codecs = codecs
        self.bootstrap = bootstrap
        self.folder = folder
        self.partitions = partitions
        self.replication = replication
        self.rng = random.Random(seed)
        self.redis = PrivateRedis(folder / "redis")
        self.truth = Truth(ACCOUNTS)
        now = time.time_ns() // 1_000_000
        self.month = month_of(now)
        self.workload = Workload(self.rng, self.truth, now)
        self.result = CaseResult(name)
        self.procs: list[ProcessorProcess] = []
        self.topics: dict[str, str] = {}
        self.settings: Settings
        self.store: RedisStateStore
        self.producer: StreamProducer
        self._started = time.monotonic()

    async def open(self) -> None:
        self.redis.start()
        prefix = f"faults.{self.name}.{uuid.uuid4().hex[:8]}"
        self.topics = await create_topics(
            self.bootstrap, prefix, partitions=self.partitions, replication=self.replication
        )
        self.settings = case_settings(self.bootstrap, self.redis.url, self.topics)
        await publish_config(self.settings, ACCOUNTS)
        self.store = RedisStateStore.from_url(self.redis.url)
        self.producer = StreamProducer(
            self.bootstrap, self.settings.events_topic, codecs=self.codecs
        )
        await self.producer.start()

    async def close(self) -> None:
        for proc in self.procs:
            proc.stop_if_running()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        with contextlib.suppress(Exception):
            await self.store.close()
        if not KEEP:
            await delete_topics(self.bootstrap, self.topics.values())
        self.redis.close()
        self.result.wall_s = time.monotonic() - self._started

    def fault(self, kind: str) -> None:
        self.result.faults[kind] = self.result.faults.get(kind, 0) + 1

    # -- processors ---------------------------------------------------------------------------

    def spawn(self, name: str = "processor", **overrides: Any) -> ProcessorProcess:
        log = self.folder / f"{name}.log"
        proc = ProcessorProcess.start(self.settings, log, **overrides)
        self.procs.append(proc)
        self.result.processors_started += 1
        return proc

    def running(self) -> list[ProcessorProcess]:
        return [p for p in self.procs if p.proc.poll() is None]

    def exited_badly(self) -> list[str]:
        """Processors that exited on their own with a non-zero status (not killed by us)."""
        bad = []
        for p in self.procs:
            code = p.proc.poll()
            if code not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                bad.append(f"{p.log.name} exited {code}: {tail(p.log)}")
        return bad

    async def positions_sum(self) -> int:
        """Sum of stored partition positions (a cheap "is it processing" probe); asks again
        when our own client still holds a connection to a Redis that was restarted."""
        for attempt in range(50):
            try:
                stored = await self.store.positions(
                    self.settings.consumer_group, self.settings.events_topic, range(self.partitions)
                )
                return sum(offset for offset, _ in stored.values())
            except StateStoreUnavailable:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    # -- the end of every case ----------------------------------------------------------------

    async def finish(
        self,
        scale: Scale,
        *,
        stop_exit_codes: tuple[int, ...] = (0,),
        truth: Callable[[], Awaitable[Truth]] | None = None,
    ) -> None:
        """Ensure one processor runs, wait for catch-up and drained outboxes, stop the
        processors gracefully and compare with the truth (`truth()` when a case's truth can
        only be known at the end, e.g. after records were lost on purpose)."""
        if not self.running():
            self.spawn("final")
        await wait_for(
            lambda: caught_up(self.settings, self.store),
            timeout_s=scale.catch_up_s,
            what=f"{self.name}: catch-up",
            procs=self.running(),
        )
        await wait_for(
            lambda: outboxes_drained(self.store),
            timeout_s=90,
            what=f"{self.name}: outboxes drained",
            procs=self.running(),
        )
        for proc in self.running():
            # A processor still importing has no SIGTERM handler yet: let it come up first, so
            # that the stop is the graceful one whose exit status we check.
            await proc.ready(timeout_s=120)
            code = proc.terminate()
            self.result.expect(
                code in stop_exit_codes, f"{proc.log.name} stopped with {code}: {tail(proc.log)}"
            )
        final = self.truth if truth is None else await truth()
        self.result.verdict = await compare(self.settings, self.store, final, self.month)


def tail(log: Path, chars: int = 1500) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-chars:]
    return ""


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str,
    procs: list[ProcessorProcess] = (),  # type: ignore[assignment]
) -> None:
    """Poll `check` every 0.3 s; raise on timeout or when a watched processor died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if await check():
                return
        except StateStoreUnavailable:
            pass  # our own client on a Redis that was just restarted: ask again
        for p in procs:
            if p.proc.poll() is not None:
                raise AssertionError(f"{what}: processor exited {p.proc.poll()}: {tail(p.log)}")
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


KEEP: list[Path] = []
"""When it holds a folder, cases work in sub-folders of it that are kept (logs, AOF)."""


@contextlib.contextmanager
def _folder(name: str) -> Iterator[Path]:
    if KEEP:
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=KEEP[0]))
        yield folder
    else:
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
            yield Path(tmp)


@contextlib.asynccontextmanager
async def opened(
    name: str,
    bootstrap: str,
    seed: int,
    *,
    partitions: int = 3,
    replication: int = 1,
    codecs: tuple[str | None, ...] = (None,),
) -> AsyncIterator[Case]:
    """A `Case` in a temporary folder (under `KEEP[0]`, and kept, when set)."""
    with _folder(name) as tmp:
        case = Case(
            name,
            bootstrap,
            tmp,
            seed,
            partitions=partitions,
            replication=replication,
            codecs=codecs,
        )
        try:
            await case.open()
            yield case
        except BaseException:
            for p in case.procs:
                case.result.notes.append(f"{p.log.name}: {tail(p.log, 600)}")
            raise
        finally:
            await case.close()


# --- the cases ----------------------------------------------------------------------------------


async def baseline(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """No fault: the control. If this fails, the other cases' failures say nothing."""
    async with opened("baseline", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s / 2)
        )
        case.spawn()
        await stream
        await case.finish(scale)
        return case.result


async def sigkill(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """SIGKILL the processor again and again at random points of its life.

    A quarter of the kills land while it starts (importing, catching up with the
    configuration, joining the group: a new member waits for the killed one's session to
    expire); the rest once its positions moved, i.e. in the middle of applying, publishing or
    storing positions.
    """
    async with opened("sigkill", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        for i in range(scale.kills):
            if case.rng.random() < 0.25:
                await asyncio.sleep(case.rng.uniform(0.1, 3.0))
                where = "starting"
            else:
                before = await case.positions_sum()
                with contextlib.suppress(AssertionError):
                    await wait_for(
                        lambda b=before: _moved(case, b),  # type: ignore[misc]
                        timeout_s=40,
                        what="progress",
                    )
                await asyncio.sleep(case.rng.uniform(0.0, 0.8))
                where = "processing"
            proc.kill()
            case.fault(f"SIGKILL while {where}")
            if stream.done() and i >= scale.kills // 2:
                # Keep killing during catch-up too, but give the stream more events first.
                await case.producer.send(case.workload.records(200))
            proc = case.spawn()
        await stream
        await case.finish(scale)
        return case.result


async def _moved(case: Case, before: int) -> bool:
    return await case.positions_sum() > before


async def redis_restart(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Stop Redis (gracefully or with SIGKILL: fsync always loses no acknowledged write) and
    start it again on its append-only file while one processor keeps running."""
    async with opened("redis_restart", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        await proc.ready()
        for i in range(scale.redis_restarts):
            await asyncio.sleep(case.rng.uniform(0.5, 2.5))
            if i % 2:
                case.redis.kill()
                case.fault("Redis SIGKILL + restart")
            else:
                case.redis.stop()
                case.fault("Redis stop + restart")
            await asyncio.sleep(case.rng.uniform(0.1, 1.5))
            case.redis.start()
        await stream
        case.result.expect(proc.proc.poll() is None, f"the processor died: {tail(proc.log)}")
        await case.finish(scale)
        return case.result


async def redis_outage(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Make Redis unreachable for several seconds: paused (SIGSTOP: connections hang until the
    client's 5 s timeout) or stopped (connections refused). The processor must keep retrying
    with backoff, never exit and never skip a batch."""
    async with opened("redis_outage", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        await proc.ready()
        for i in range(scale.redis_outages):
            await asyncio.sleep(case.rng.uniform(0.5, 2.0))
            if i % 2 == 0:
                case.redis.pause()
                await asyncio.sleep(scale.outage_s)
                case.redis.resume()
                case.fault(f"Redis paused {scale.outage_s:.1f} s")
            else:
                case.redis.stop()
                await asyncio.sleep(scale.outage_s)
                case.redis.start()
                case.fault(f"Redis down {scale.outage_s:.1f} s")
        await stream
        case.result.expect(proc.proc.poll() is None, f"the processor died: {tail(proc.log)}")
        retries = proc.log.read_text(errors="replace").count("Redis unavailable, retrying")
        case.result.notes.append(f"{retries} 'Redis unavailable, retrying' log lines")
        case.result.expect(retries > 0, "the processor never noticed Redis was unreachable")
        await case.finish(scale)
        return case.result


async def kafka_restart(_shared: str, scale: Scale, seed: int) -> CaseResult:
    """Restart a private broker (never the shared test stack) while a processor runs and the
    producer keeps sending; the processor must ride through it."""
    with tempfile.TemporaryDirectory(prefix="faults-kafka-") as tmp:
        kafka = PrivateKafka(Path(tmp) / "stack")
        try:
            kafka.up()
            async with opened("kafka_restart", kafka.bootstrap, seed) as case:
                stream = asyncio.create_task(
                    case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
                )
                proc = case.spawn()
                await proc.ready(timeout_s=120)
                for i in range(scale.kafka_restarts):
                    await asyncio.sleep(case.rng.uniform(1.0, 3.0))
                    if i % 2:
                        await asyncio.to_thread(_kill_and_start, kafka)
                        case.fault("broker SIGKILL + restart")
                    else:
                        await asyncio.to_thread(kafka.restart)
                        case.fault("broker stop + restart")
                await stream
                case.result.expect(
                    proc.proc.poll() is None, f"the processor died: {tail(proc.log)}"
                )
                await case.finish(scale)
                return case.result
        finally:
            kafka.close()


def _kill_and_start(kafka: PrivateKafka) -> None:
    pidfile = kafka.folder / "kafka" / "kafka.pid"
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        import os  # noqa: PLC0415

        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    kafka.up()


async def leader_change(_shared: str, scale: Scale, seed: int) -> CaseResult:
    """Move partition leaders under load on a private three-node cluster (never the shared
    test stack): every topic of the case has 3 replicas and `min.insync.replicas` 2, the
    producer writes with acks=all. Mid-stream, SIGKILL the node leading a partition of the
    events topic (once each the leader of the thresholds topic and of the configuration
    topic, which the processor writes and follows), wait until a new leader is elected,
    start the node again and wait until it is back in sync; then a preferred-leader election
    moves leaderships back to it with no node going down. The processor must ride through
    every move (NotLeaderForPartition, a new group coordinator, a controller failover) and
    never exit."""
    with tempfile.TemporaryDirectory(prefix="faults-cluster-") as tmp:
        cluster = PrivateKafkaCluster(Path(tmp) / "cluster")
        try:
            await asyncio.to_thread(cluster.start)
            async with opened("leader_change", cluster.bootstrap, seed, replication=3) as case:
                moves_done = asyncio.Event()
                stream = asyncio.create_task(_stream_until(case, scale, moves_done))
                proc = case.spawn()
                await proc.ready(timeout_s=120)
                for i in range(scale.leader_changes):
                    await asyncio.sleep(case.rng.uniform(0.5, 2.0))
                    await _kill_a_leader(case, cluster, _leader_target(case, i))
                    moved = await _elect_preferred(case, cluster)
                    case.result.notes.append(
                        f"preferred election {i + 1}: {moved} leadership(s) moved back"
                    )
                    if moved:
                        case.fault("preferred-leader election (no kill)")
                moves_done.set()
                await stream
                case.result.expect(
                    proc.proc.poll() is None, f"the processor died: {tail(proc.log)}"
                )
                seen = proc.log.read_text(errors="replace").count("NotLeaderForPartition")
                case.result.notes.append(
                    f"{seen} NotLeaderForPartition answers logged by the processor's clients"
                )
                await case.finish(scale)
                return case.result
        finally:
            await asyncio.to_thread(cluster.close)


async def _stream_until(case: Case, scale: Scale, done: asyncio.Event) -> None:
    """The case's stream, then 50 records every half second until `done`: every leader move
    (about 12 s each) happens while records and crossings flow, without stretching the
    stream itself."""
    await case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
    while not done.is_set():
        await case.producer.send(case.workload.records(50))
        await asyncio.sleep(0.5)


def _leader_target(case: Case, i: int) -> tuple[str, int, str]:
    """Whose leader the i-th kill hits: (topic, partition, label). The second kill takes the
    thresholds topic's leader, the third the configuration topic's, the rest an events
    partition's."""
    if i == 1:
        return case.settings.thresholds_topic, 0, "thresholds"
    if i == 2:
        return case.settings.accounts_topic, 0, "accounts (configuration)"
    partition = case.rng.randrange(case.partitions)
    return case.settings.events_topic, partition, f"events/{partition}"


def _fault_label(label: str) -> str:
    """The fault's name in the figures: one row for all events partitions."""
    return "events partition" if label.startswith("events/") else label


async def _kill_a_leader(
    case: Case, cluster: PrivateKafkaCluster, target: tuple[str, int, str]
) -> None:
    """SIGKILL the node leading `target`, wait for a new leader, restart the node, wait
    until every replica is in sync again (so the next kill keeps the acks=all quorum)."""
    topic, partition, label = target
    leader = await cluster.wait_leader(topic, partition)
    cluster.kill(leader)
    began = time.monotonic()
    new = await cluster.wait_leader(topic, partition, not_on=leader)
    case.fault(f"SIGKILL of the {_fault_label(label)} leader")
    case.result.notes.append(
        f"{label}: node {leader} killed, node {new} leads after {time.monotonic() - began:.1f} s"
    )
    await asyncio.sleep(case.rng.uniform(0.2, 1.0))  # the processor runs with a node down
    await asyncio.to_thread(cluster.start_node, leader)
    await cluster.wait_in_sync()


async def _elect_preferred(case: Case, cluster: PrivateKafkaCluster) -> int:
    """Preferred-leader election on the case's topics; how many leaderships moved."""
    moved = 0
    for topic in case.topics.values():
        before = await cluster.partitions(topic)
        await cluster.elect_preferred(topic, sorted(before))
        after = await cluster.partitions(topic)
        moved += sum(after[p].leader != before[p].leader for p in before)
    return moved


async def rebalance(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Up to three processors join and leave (SIGTERM: leaves the group at once; SIGKILL:
    the group waits for its session to expire) while the stream flows; six partitions."""
    async with opened("rebalance", bootstrap, seed, partitions=6) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        case.spawn("member-1")
        serial = 1
        for _ in range(scale.membership_changes):
            await asyncio.sleep(case.rng.uniform(0.5, 3.0))
            alive = case.running()
            if len(alive) < 3 and (len(alive) <= 1 or case.rng.random() < 0.5):
                serial += 1
                case.spawn(f"member-{serial}")
                case.fault("processor joined")
            else:
                leaving = case.rng.choice(alive)
                if case.rng.random() < 0.7:
                    leaving.terminate()
                    case.fault("processor left (SIGTERM)")
                else:
                    leaving.kill()
                    case.fault("processor left (SIGKILL)")
        await stream
        case.result.expect(not case.exited_badly(), f"exits: {case.exited_badly()}")
        await case.finish(scale)
        return case.result


async def redis_flushed_while_down(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Redis comes back empty while no processor runs (FLUSHALL): the next processor finds no
    positions next to Kafka's committed offsets, replays the log from its start and rebuilds
    every counter exactly; crossings are decided again with the same ids."""
    async with opened("redis_flushed_while_down", bootstrap, seed) as case:
        proc = case.spawn()
        await case.producer.stream(case.workload, scale.events // 2, duration_s=scale.stream_s / 3)
        await wait_for(
            lambda: caught_up(case.settings, case.store),
            timeout_s=scale.catch_up_s,
            what="first catch-up",
            procs=[proc],
        )
        code = proc.terminate()  # graceful: offsets are committed to Kafka on the way out
        case.result.expect(code == 0, f"stop exited {code}")
        case.redis.flushall()
        case.fault("FLUSHALL while stopped")
        proc = case.spawn("after-flush")
        await case.producer.stream(case.workload, scale.events // 2, duration_s=scale.stream_s / 3)
        await case.finish(scale)
        text = proc.log.read_text(errors="replace")
        case.result.expect(
            "rebuilding by replaying the partition from its beginning" in text,
            "the processor did not say it was rebuilding",
        )
        # The API refuses while replay targets are recorded; every one must be cleared once
        # the replays caught up, or the API would refuse for ever.
        case.result.expect(
            "rebuilt: the replay reached the offset committed before the loss" in text,
            "the processor did not say a replay reached its target",
        )
        client = case.redis.client()
        try:
            left = client.hlen(REBUILDING)
        finally:
            client.close()
        case.result.expect(left == 0, f"{left} replay target(s) left in {REBUILDING}")
        return case.result


async def redis_flushed_while_running(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """FLUSHALL under a running processor, Redis staying up (no connection drops: the hardest
    case to notice). The processor must stop with StateLost instead of counting the open
    month from zero; restarted, it rebuilds from the log. Should Redis hold partial state (a
    batch that landed between the check and the write), the restart refuses with StateLost
    too, and the operator's FLUSHALL + restart rebuilds."""
    async with opened("redis_flushed_while_running", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        await proc.ready()
        before = await case.positions_sum()
        await wait_for(lambda: _moved(case, before), timeout_s=60, what="progress")
        await asyncio.sleep(case.rng.uniform(0.5, 2.0))
        case.redis.flushall()
        case.fault("FLUSHALL while running")
        try:
            await wait_for(
                lambda: _exited(proc), timeout_s=60, what="the processor to stop with StateLost"
            )
        except AssertionError as exc:
            case.result.expect(False, str(exc))
            proc.kill()
        text = proc.log.read_text(errors="replace")
        case.result.expect(proc.proc.returncode == 2, f"exit status {proc.proc.returncode}, not 2")
        case.result.expect("lost its state while" in text, f"no StateLost: {tail(proc.log)}")
        await stream
        for attempt in range(3):
            proc = case.spawn(f"restart-{attempt}")
            await asyncio.sleep(0.5)
            try:
                await wait_for(
                    lambda p=proc: _started_or_exited(p),  # type: ignore[misc]
                    timeout_s=60,
                    what="the restarted processor",
                )
            except AssertionError as exc:
                case.result.expect(False, str(exc))
            if proc.proc.poll() is None:
                break
            case.result.notes.append(f"restart {attempt} refused: {tail(proc.log, 400)}")
            case.redis.flushall()
            case.fault("operator FLUSHALL after refusal")
        await case.finish(scale)
        return case.result


async def redis_restored_from_backup(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Redis comes back *older* under a running processor: restored from a backup taken a
    while before (what a host crash does to the last second of `appendfsync everysec`, too).
    The marker is the same, so only the positions tell: the processor must stop instead of
    writing on from its in-memory offsets (which would skip everything the backup lacks);
    restarted, it resumes from the restored positions and the replay makes the counts exact."""
    async with opened("redis_restored_from_backup", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        await proc.ready()
        before = await case.positions_sum()
        await wait_for(lambda: _moved(case, before), timeout_s=60, what="progress")
        backup = case.folder / "backup"
        case.redis.backup(backup)
        case.fault("Redis stop + backup + start")
        at_backup = await case.positions_sum()
        await wait_for(
            lambda: _moved(case, at_backup + 300), timeout_s=60, what="progress after backup"
        )
        case.redis.restore(backup)
        case.fault("Redis restored from the backup")
        try:
            await wait_for(lambda: _exited(proc), timeout_s=60, what="StateLost after restore")
        except AssertionError as exc:
            case.result.expect(False, str(exc))
            proc.kill()
        text = proc.log.read_text(errors="replace")
        case.result.expect(proc.proc.returncode == 2, f"exit status {proc.proc.returncode}, not 2")
        case.result.expect("Redis went back in time" in text, f"no StateLost: {tail(proc.log)}")
        await stream
        await case.finish(scale)
        return case.result


async def _exited(proc: ProcessorProcess) -> bool:
    return proc.proc.poll() is not None


async def _started_or_exited(proc: ProcessorProcess) -> bool:
    """Exited, or running and past its assignment (it logged that it rebuilds or started)."""
    if proc.proc.poll() is not None:
        return True
    text = proc.log.read_text(errors="replace")
    return "rebuilding by replaying" in text


async def log_start_deleted(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Redis emptied while stopped, and the log's start deleted (`DeleteRecords`, as
    retention would): a replay cannot rebuild, so the processor must stop with StateLost
    naming the partition, exit non-zero, and count nothing."""
    async with opened("log_start_deleted", bootstrap, seed) as case:
        proc = case.spawn()
        await case.producer.stream(case.workload, min(scale.events, 1500), duration_s=2)
        await wait_for(
            lambda: caught_up(case.settings, case.store),
            timeout_s=scale.catch_up_s,
            what="catch-up",
            procs=[proc],
        )
        case.result.expect(proc.terminate() == 0, "graceful stop failed")
        case.redis.flushall()
        tp = TopicPartition(case.settings.events_topic, 1)
        low = await _delete_log_start(bootstrap, tp)
        case.fault("FLUSHALL + log start deleted")
        case.result.notes.append(f"log start of {tp.topic}/{tp.partition} moved to {low}")
        proc = case.spawn("after-loss")
        text = await _state_lost_exit(case, proc, timeout_s=90)
        case.result.expect(
            f"{tp.topic}/{tp.partition}: Redis has no position" in text,
            f"no StateLost naming the partition: {tail(proc.log)}",
        )
        client = case.redis.client()
        try:
            counters = client.keys("mtr:{*}:c:*")
        finally:
            client.close()
        case.result.expect(not counters, f"counted after StateLost: {counters[:5]}")
        return case.result


async def _state_lost_exit(case: Case, proc: ProcessorProcess, *, timeout_s: float) -> str:
    """Wait for the processor to stop on StateLost (exit status 2 expected); its log."""
    try:
        await wait_for(lambda: _exited(proc), timeout_s=timeout_s, what="StateLost exit")
    except AssertionError as exc:
        case.result.expect(False, str(exc))
        proc.kill()
    case.result.expect(proc.proc.returncode == 2, f"exit status {proc.proc.returncode}, not 2")
    return proc.log.read_text(errors="replace")


async def _delete_log_start(bootstrap: str, tp: TopicPartition) -> int:
    """Move the log start of `tp` to the middle of the partition; returns the new start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        result = await admin.delete_records({tp: RecordsToDelete(max(1, end // 2))})
    finally:
        await admin.close()
    return result[tp]


CODECS: tuple[str | None, ...] = (None, "gzip", "snappy", "lz4", "zstd")
"""Every compression codec Kafka offers; producers may use any of them."""


async def compressed(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """The stream arrives in record batches compressed with every codec Kafka offers, chunk by
    chunk in turn (none, gzip, snappy, lz4, zstd), and the processor is SIGKILLed twice so
    that a restart reads compressed batches again from its stored positions."""
    async with opened("compressed", bootstrap, seed, codecs=CODECS) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        for _ in range(2):
            before = await case.positions_sum()
            with contextlib.suppress(AssertionError):
                await wait_for(
                    lambda b=before: _moved(case, b),  # type: ignore[misc]
                    timeout_s=40,
                    what="progress",
                    procs=[proc],
                )
            await asyncio.sleep(case.rng.uniform(0.2, 1.0))
            proc.kill()
            case.fault("SIGKILL between compressed batches")
            proc = case.spawn()
        await stream
        case.result.notes.append(
            "chunks per codec: "
            + ", ".join(f"{k} {v}" for k, v in sorted(case.producer.chunks_by_codec.items()))
        )
        case.result.expect(
            set(case.producer.chunks_by_codec) == {c or "none" for c in CODECS},
            f"not every codec was used: {case.producer.chunks_by_codec}",
        )
        await case.finish(scale)
        return case.result


def hostile_config_records(rng: random.Random) -> list[tuple[bytes | None, bytes | None, str]]:
    """Configuration records that must each be refused (key, value, what it is), some of them
    keyed on the live plan and live accounts: the last good version of those keys stays."""
    deep = "a = " + "[" * 5000 + "]" * 5000
    tag = rng.getrandbits(32)
    return [
        (b"plan:faults-deep", orjson.dumps({"source": "deep.toml", "toml": deep}), "deep TOML"),
        (f"plan:{PLAN_ID}".encode(), orjson.dumps({"toml": 5}), "toml is a number (live plan)"),
        (f"plan:{PLAN_ID}".encode(), b"not json at all", "not JSON (live plan)"),
        (b"plan:faults-huge", orjson.dumps({"toml": "x = " + "9" * 800_000}), "huge TOML"),
        (f"account:{ACCOUNTS[3]}".encode(), b"\xff\xfe garbage", "not JSON (live account)"),
        (
            f"account:{ACCOUNTS[4]}".encode(),
            orjson.dumps({"id": "someone-else", "plan": PLAN_ID}),
            "body names another account (live account)",
        ),
        (f"account:{ACCOUNTS[5]}".encode(), b"[" * 100_000, "deeply nested JSON (live account)"),
        (f"account:{ACCOUNTS[6]}".encode(), orjson.dumps([1, 2, 3]), "JSON array (live account)"),
        (None, b"{}", "no key"),
        (b"\xff\xfekey", b"{}", "key not UTF-8"),
        (f"weird:{tag}".encode(), b"{}", "unknown key prefix"),
        (f"account:ghost-{tag}".encode(), None, "tombstone of an unknown account"),
    ]


async def hostile_config(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Bad records on the configuration topic, before the first processor starts and again
    mid-stream, several keyed on the live plan and live accounts; processors restart twice,
    re-reading them at start-up. Every account keeps its last good configuration and every
    event is counted exactly; no processor exits."""
    async with opened("hostile_config", bootstrap, seed) as case:
        bad = hostile_config_records(case.rng)
        await _produce_config(case, bad)
        case.fault("bad configuration records before start")
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        for _ in range(2):
            before = await case.positions_sum()
            await wait_for(
                lambda b=before: _moved(case, b),  # type: ignore[misc]
                timeout_s=90,
                what="progress despite bad configuration records",
                procs=[proc],
            )
            await _produce_config(case, bad)
            case.fault("bad configuration records mid-stream")
            await asyncio.sleep(case.rng.uniform(0.5, 1.5))
            case.result.expect(proc.terminate() == 0, f"graceful stop failed: {tail(proc.log)}")
            case.fault("processor restarted over bad records")
            proc = case.spawn()
        await stream
        await case.finish(scale)
        bad_exits = case.exited_badly()
        case.result.expect(not bad_exits, f"processors exited: {bad_exits}")
        # Each refusal is logged with its key and reason by every processor that read it.
        for proc in case.procs:
            text = proc.log.read_text(errors="replace")
            for key, value, what in bad:
                if key is None or value is None or not key.isascii():
                    continue  # no key, a tombstone, a key that is not text: checked elsewhere
                line = f"configuration record refused (the previous version stays): {key.decode()}"
                case.result.expect(line in text, f"{proc.log.name}: {what} not logged as refused")
        return case.result


async def _produce_config(
    case: Case, records: list[tuple[bytes | None, bytes | None, str]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=case.bootstrap, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, _what in records:
            await producer.send_and_wait(case.settings.accounts_topic, key=key, value=value)
    finally:
        await producer.stop()


NEAR_LIMIT_BYTES = 1_040_000
"""A value the broker takes at its defaults (1 MiB batches) that cannot be forwarded whole
with the dead-letter headers: its summary goes instead."""


def _oversized_record(case: Case, size: int) -> tuple[bytes, bytes]:
    """A usage event padded to `size` bytes (unique bytes: matched one by one)."""
    account = case.rng.choice(ACCOUNTS)
    doc = {
        "specversion": "1.0",
        "id": uuid.UUID(int=case.rng.getrandbits(128)).hex,
        "source": "faults",
        "type": "email.sent",
        "subject": account,
        "time": "2026-01-01T00:00:00Z",
        "data": {"contact": "c1", "kind": "marketing", "pad": ""},
    }
    value = orjson.dumps(doc)
    pad = "x" * (size - len(value))
    doc["data"]["pad"] = pad  # type: ignore[index]
    return account.encode(), orjson.dumps(doc)


async def oversized(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Records of about 1 MiB (accepted by the broker at its defaults, too large to forward
    whole to the dead-letter topic) and of 200 KB in the middle of the stream, and a SIGKILL
    after them: every partition keeps flowing, the large ones reach the dead-letter topic as
    summaries (matched by their SHA-256), the others whole."""
    async with opened("oversized", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        proc = case.spawn()
        big = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024)
        await big.start()
        try:
            for i in range(6):
                await asyncio.sleep(scale.stream_s / 8)
                size = NEAR_LIMIT_BYTES if i % 2 == 0 else 200_000
                key, value = _oversized_record(case, size)
                await big.send_and_wait(case.settings.events_topic, key=key, value=value)
                case.truth.add_invalid(value)
                case.fault(f"record of {size:,} bytes")
                if i == 3:
                    await asyncio.sleep(0.5)
                    proc.kill()
                    case.fault("SIGKILL after large records")
                    proc = case.spawn()
        finally:
            await big.stop()
        await stream
        await case.finish(scale)
        return case.result


async def retention_behind(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """Retention deletes records a running processor has not applied yet (it is paused with
    SIGSTOP for a moment, shorter than its session, while the stream goes on and the log start
    of a partition moves past its position). It must stop with StateLost naming the lost range
    (exit status 2), and the same on a restart; restarted with `--accept-lost-records` it logs
    the range and goes on. The truth then is every record except the lost range."""
    async with opened("retention_behind", bootstrap, seed) as case:
        tp = TopicPartition(case.settings.events_topic, 0)
        proc = case.spawn()
        await case.producer.stream(case.workload, scale.events // 2, duration_s=scale.stream_s / 2)
        await wait_for(
            lambda: caught_up(case.settings, case.store),
            timeout_s=scale.catch_up_s,
            what="catch-up",
            procs=[proc],
        )
        proc.proc.send_signal(signal.SIGSTOP)
        try:
            await case.producer.send(case.workload.records(scale.events // 2))
            before = await _read_partition(bootstrap, tp)
            cut = await _delete_up_to(bootstrap, tp, len(before) and before[-1].offset + 1)
        finally:
            proc.proc.send_signal(signal.SIGCONT)
        case.fault("log start moved past a running processor's position")
        case.result.notes.append(f"log start of {tp.topic}/{tp.partition} moved to {cut}")
        text = await _state_lost_exit(case, proc, timeout_s=120)
        case.result.expect(
            "deleted by retention" in text and f"{tp.topic}/{tp.partition}" in text,
            f"no StateLost naming the partition and range: {tail(proc.log)}",
        )
        again = case.spawn("restart-refused")
        await wait_for(lambda: _exited(again), timeout_s=120, what="StateLost exit on restart")
        case.result.expect(
            again.proc.returncode == 2, f"restart exited {again.proc.returncode}, not 2"
        )
        stored = await case.store.positions(
            case.settings.consumer_group, case.settings.events_topic, [0]
        )
        applied_to = stored[0][0] + 1 if 0 in stored else 0  # stored: the last offset applied
        accepted = case.spawn("accepting", accept_lost_records=True)
        await case.producer.stream(case.workload, 200, duration_s=1)
        lost = [r for r in before if applied_to <= r.offset < cut]
        case.result.notes.append(f"records {applied_to}..{cut - 1} ({len(lost)}) lost by retention")

        async def truth_without_lost_range() -> Truth:
            """Every record but the lost range, from the log as it was (in order per partition)."""
            truth = Truth(ACCOUNTS)
            kept = [r for r in before if r.offset < applied_to]
            rest = await _read_rest(bootstrap, case.settings.events_topic, case.partitions)
            for r in kept + rest:
                if bytes(r.value) in case.truth.invalid:
                    truth.add_invalid(bytes(r.value))
                else:
                    truth.add(orjson.loads(r.value))
            return truth

        await case.finish(scale, truth=truth_without_lost_range)
        text = accepted.log.read_text(errors="replace")
        case.result.expect(
            f"{applied_to}..{cut - 1}" in text,
            f"the accepted loss {applied_to}..{cut - 1} is not logged: {tail(accepted.log)}",
        )
        return case.result


async def _read_partition(bootstrap: str, tp: TopicPartition) -> list[Any]:
    """Every record of one partition, from its log start to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[Any] = []
        deadline = time.monotonic() + 60
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


async def _read_rest(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    """The whole topic as it is now, partition by partition (a cut one from its moved start)."""
    found: list[Any] = []
    for p in range(partitions):
        found.extend(await _read_partition(bootstrap, TopicPartition(topic, p)))
    return found


async def _delete_up_to(bootstrap: str, tp: TopicPartition, offset: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        result = await admin.delete_records({tp: RecordsToDelete(offset)})
    finally:
        await admin.close()
    return result[tp]


async def publisher_kills(bootstrap: str, scale: Scale, seed: int) -> CaseResult:
    """SIGKILL the processor (and the publisher it runs) right when the thresholds topic grows,
    i.e. between the publisher's sends and the acknowledgement of its outbox entries: inside
    the open transaction, between its commit and the deletion of the entries in Redis, or
    just after. `compare` reads with `read_committed`, as billing does, and fails the case on
    any id seen twice (ADR 0008)."""
    async with opened("publisher_kills", bootstrap, seed) as case:
        stream = asyncio.create_task(
            case.producer.stream(case.workload, scale.events, duration_s=scale.stream_s)
        )
        watch = AIOKafkaConsumer(bootstrap_servers=bootstrap)  # read_uncommitted: sees sends
        await watch.start()
        try:
            tp = TopicPartition(case.settings.thresholds_topic, 0)
            proc = case.spawn()
            missed = 0
            for _ in range(scale.kills + 3):
                if not await _grows(watch, tp, within_s=30):
                    missed += 1  # nothing published for 30 s: kill anyway
                proc.kill()
                case.fault("SIGKILL while publishing")
                await case.producer.send(case.workload.records(100))  # more crossings to come
                proc = case.spawn()
            if missed:
                case.result.notes.append(f"{missed} kills found nothing being published")
        finally:
            await watch.stop()
        await stream
        await case.finish(scale)
        return case.result


async def _grows(watch: AIOKafkaConsumer, tp: TopicPartition, *, within_s: float) -> bool:
    """Whether the partition's end offset (uncommitted records included) moves within
    `within_s`, polled every 5 ms so that the kill lands inside the publisher's round."""
    before = (await watch.end_offsets([tp]))[tp]
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if (await watch.end_offsets([tp]))[tp] != before:
            return True
        await asyncio.sleep(0.005)
    return False


CASES: dict[str, Callable[[str, Scale, int], Awaitable[CaseResult]]] = {
    "baseline": baseline,
    "sigkill": sigkill,
    "redis_restart": redis_restart,
    "redis_outage": redis_outage,
    "kafka_restart": kafka_restart,
    "leader_change": leader_change,
    "rebalance": rebalance,
    "redis_flushed_while_down": redis_flushed_while_down,
    "redis_flushed_while_running": redis_flushed_while_running,
    "redis_restored_from_backup": redis_restored_from_backup,
    "log_start_deleted": log_start_deleted,
    "compressed": compressed,
    "hostile_config": hostile_config,
    "oversized": oversized,
    "retention_behind": retention_behind,
    "publisher_kills": publisher_kills,
}
