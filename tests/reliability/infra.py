"""Private services for fault injection: a Redis and a Kafka broker that only this run touches.

Why private: the fault cases restart, pause, flush and kill these services. The shared test
stack (Kafka 29092, Redis 26379) serves other engineers' test sessions at the same time, so a
fault case never touches it. Its Kafka is only used for
topics that the case creates and deletes. Everything listens on 127.0.0.1 on free ports and
lives in a temporary folder.

- `PrivateRedis`: `redis-server` in the foreground (so we hold its pid), configured by the
  project's `deploy/local/redis/redis.conf` plus `appendonly yes` and `appendfsync always`:
  each acknowledged write is on disk, so a stop or a SIGKILL loses nothing the processor was
  told is written. `stop`/`start` keep the data folder (the append-only file is replayed);
  `pause`/`resume` (SIGSTOP/SIGCONT) make it unreachable without closing its connections.
- `PrivateKafka`: a second broker started by `deploy/local/stack.sh` with its own
  `METERING_STACK_DIR` and ports, stopped and started like the real stack.
- `PrivateKafkaCluster`: three combined broker + controller nodes (KRaft, one static voter
  list, one cluster id), replication factor 3 and `min.insync.replicas` 2, so a broker that
  leads a partition can be SIGKILLed and the partition moves to another leader. stack.sh runs
  one node only, so these are started here from the same jars, template and log4j file.
- `SaslKafka`: one broker whose client listener speaks SASL (also started here).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int8, Int16, Int32, Schema, String

REPO = Path(__file__).resolve().parents[2]
STACK_SH = REPO / "deploy" / "local" / "stack.sh"
REDIS_CONF = REPO / "deploy" / "local" / "redis" / "redis.conf"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    ports: set[int] = set()
    for _ in range(100):
        ports.add(free_port())
        if len(ports) == count:
            break
    return sorted(ports)


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 (made with `openssl`)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, folder: Path) -> TlsFiles:
        folder.mkdir(parents=True, exist_ok=True)
        ca, ca_key = folder / "ca.crt", folder / "ca.key"
        cert, key, csr = folder / "server.crt", folder / "server.key", folder / "server.csr"
        ext = folder / "ext.cnf"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        for args in (
            (
                f"req -x509 -newkey rsa:2048 -nodes -keyout {ca_key} -out {ca} -days 2"
                " -subj /CN=metering-test-ca"
            ),
            f"req -newkey rsa:2048 -nodes -keyout {key} -out {csr} -subj /CN=127.0.0.1",
            (
                f"x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -out {cert}"
                f" -days 2 -extfile {ext}"
            ),
        ):
            subprocess.run(["openssl", *args.split()], check=True, capture_output=True, timeout=60)
        return cls(ca, cert, key)


@dataclass
class PrivateRedis:
    """A redis-server of our own, in `folder`, on a free loopback port.

    `password` sets `requirepass` (the default user); `users` adds ACL users (name ->
    password, all rights); `tls` serves TLS only (the port then speaks TLS, rediss://).
    """

    folder: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        """`redis[s]://[:password@]127.0.0.1:<port>/0[?ssl_ca_certs=...]`."""
        return self.url_for(None, self.password)

    def url_for(self, user: str | None, password: str | None) -> str:
        auth = f"{user or ''}:{password}@" if password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"

    @property
    def log(self) -> Path:
        return self.folder / "redis.log"

    def _config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "data").mkdir(exist_ok=True)
        lines = [
            "# Written by tests/reliability/infra.py: the project's settings, AOF always.",
            f"include {REDIS_CONF}",
            f"port {self.port}",
            f"dir {self.folder / 'data'}",
            "daemonize no",
            f"logfile {self.log}",
            "appendonly yes",
            "appendfsync always",
            "databases 16",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        for user, secret in self.users.items():
            lines.append(f"user {user} on >{secret} ~* &* +@all")
        if self.tls is not None:
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca}",
                "tls-auth-clients no",
            ]
        path = self.folder / "redis.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout_s: float = 30) -> None:
        """Start (or restart on the same data folder) and wait until it answers PING."""
        if self.running:
            return
        self.proc = subprocess.Popen(
            ["redis-server", str(self._config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.starts += 1
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 30) -> None:
        """Wait until PING answers (after the append-only file was loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_tail()}")
            try:
                client = self.client(socket_timeout=1)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except redis.exceptions.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} not ready after {timeout_s}s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30) -> None:
        """Graceful stop (SIGTERM: Redis fsyncs the append-only file and exits)."""
        self._signal_and_wait(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: with `appendfsync always` no acknowledged write is lost."""
        self._signal_and_wait(signal.SIGKILL, 30)

    def _signal_and_wait(self, sig: signal.Signals, timeout_s: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()  # a stopped process ignores SIGTERM until continued
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung Redis)."""
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.running and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def backup(self, dest: Path) -> None:
        """Copy the data folder (the append-only files) while stopped: a consistent backup."""
        was_running = self.running
        self.stop()
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self.folder / "data", dest)
        if was_running:
            self.start()

    def restore(self, source: Path) -> None:
        """Stop, put a backup's data folder in place, start: Redis goes back in time."""
        self.stop()
        shutil.rmtree(self.folder / "data")
        shutil.copytree(source, self.folder / "data")
        self.start()

    def client(self, **options: Any) -> redis.Redis:
        """A synchronous client (for flushing and inspecting from the test)."""
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **options)

    def flushall(self) -> None:
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def close(self) -> None:
        """Stop it for good (the folder is left to the caller's temporary directory)."""
        self.kill()


@dataclass
class PrivateKafka:
    """A Kafka broker of our own, run by `deploy/local/stack.sh` in `folder` on free ports."""

    folder: Path
    ports: list[int] = field(default_factory=lambda: free_ports(3))
    started: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            METERING_STACK_DIR=str(self.folder),
            KAFKA_PORT=str(self.ports[0]),
            KAFKA_CONTROLLER_PORT=str(self.ports[1]),
            REDIS_PORT=str(self.ports[2]),
            METERING_STACK_TIMEOUT="180",
        )
        return env

    def _stack(self, *args: str, timeout_s: float = 240) -> str:
        done = subprocess.run(
            [str(STACK_SH), "--profile", "test", *args, "kafka"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"stack.sh {' '.join(args)} kafka failed:\n{done.stdout}{done.stderr}\n"
                f"{self.log_tail()}"
            )
        return done.stdout

    def up(self) -> None:
        """Format (first time), start and wait until the broker is ready."""
        self.started = True
        self._stack("start")
        self._stack("wait")

    def stop(self) -> None:
        """Graceful stop (what an operator's restart does)."""
        self._stack("stop")

    def restart(self) -> None:
        self.stop()
        self.up()

    def log_tail(self, lines: int = 30) -> str:
        log = self.folder / "kafka" / "logs" / "server.log"
        with contextlib.suppress(OSError):
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def close(self) -> None:
        """Stop the broker and delete its folder (its data are only this run's)."""
        if self.started:
            with contextlib.suppress(Exception):
                self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _new_cluster_id() -> str:
    """What `StorageTool random-uuid` prints: 16 random bytes, base64url, never starting "-"."""
    return "A" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")[1:]


def _render_broker_template(client: int, controller: int, data: Path) -> str:
    """deploy/local/kafka/server.properties with its placeholders filled in."""
    template = (REPO / "deploy" / "local" / "kafka" / "server.properties").read_text()
    return (
        template.replace("@KAFKA_PORT@", str(client))
        .replace("@KAFKA_CONTROLLER_PORT@", str(controller))
        .replace("@KAFKA_DATA_DIR@", str(data))
    )


def _java(logs: Path) -> list[str]:
    """`java` with the project's log4j2 file, the node's log folder and the Maven jars."""
    return [
        "java",
        f"-Dlog4j2.configurationFile={REPO}/deploy/local/kafka/log4j2.properties",
        f"-Dkafka.logs.dir={logs}",
        "-cp",
        f"{kafka_jars()}/*",
    ]


class _ElectLeadersResponseV1(Response):  # type: ignore[misc]
    API_KEY = 43
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "results",
            Array(
                ("topic", String("utf-8")),
                (
                    "partitions",
                    Array(
                        ("partition", Int32),
                        ("error_code", Int16),
                        ("error_message", String("utf-8")),
                    ),
                ),
            ),
        ),
    )


class _ElectLeadersRequestV1(RequestStruct):  # type: ignore[misc]
    API_KEY = 43
    API_VERSION = 1
    RESPONSE_TYPE = _ElectLeadersResponseV1
    SCHEMA = Schema(
        ("election_type", Int8),
        ("topic_partitions", Array(("topic", String("utf-8")), ("partitions", Array(Int32)))),
        ("timeout_ms", Int32),
    )


class _ElectPreferredLeaders(Request[_ElectLeadersRequestV1]):  # type: ignore[misc]
    """ElectLeaders (API 43) v1, election type 0 (preferred replica): aiokafka's admin client
    has no call for it, and the jars hold no kafka-tools (LeaderElectionCommand)."""

    API_KEY = 43

    def __init__(self, topic: str, partitions: list[int]) -> None:
        self._topic = topic
        self._partitions = partitions

    def build(self, request_struct_class: type[_ElectLeadersRequestV1]) -> _ElectLeadersRequestV1:
        return request_struct_class(0, [(self._topic, self._partitions)], 30_000)


@dataclass(frozen=True)
class PartitionState:
    """One partition as the cluster's metadata describes it."""

    leader: int
    """Node id of the leader, -1 while none is elected."""
    replicas: tuple[int, ...]
    """Assigned replicas; the first one is the preferred leader."""
    isr: tuple[int, ...]


@dataclass
class PrivateKafkaCluster:
    """Three Kafka nodes of our own (KRaft, each `process.roles=broker,controller`), in `folder`.

    Node ids 1-3 share one static `controller.quorum.voters` list and one cluster id (each
    node's storage formatted with it). Every node renders the project's broker template
    (deploy/local/kafka/server.properties) and then overrides what a cluster needs (later keys
    win in a properties file): its id, the voter list, replication factor 3 for new and
    internal topics, `min.insync.replicas` 2 (an acks=all write survives one node down), and
    no automatic leader rebalance, so leaders move only when the test moves them.
    """

    folder: Path
    ports: list[int] = field(default_factory=lambda: free_ports(6))
    """Client ports of nodes 1-3, then their controller ports."""
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    nodes: tuple[int, ...] = (1, 2, 3)
    heap: str = "-Xmx384m"

    def client_port(self, node: int) -> int:
        return self.ports[node - 1]

    def controller_port(self, node: int) -> int:
        return self.ports[len(self.nodes) + node - 1]

    @property
    def bootstrap(self) -> str:
        """All three client addresses (clients find the live ones)."""
        return ",".join(f"127.0.0.1:{self.client_port(n)}" for n in self.nodes)

    def _dir(self, node: int) -> Path:
        return self.folder / f"node-{node}"

    def _properties(self, node: int) -> Path:
        home = self._dir(node)
        voters = ",".join(f"{n}@127.0.0.1:{self.controller_port(n)}" for n in self.nodes)
        client, controller = self.client_port(node), self.controller_port(node)
        overrides = [
            f"node.id={node}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{client}",
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "share.coordinator.state.topic.replication.factor=3",
            "share.coordinator.state.topic.min.isr=2",
            "auto.leader.rebalance.enable=false",
            # A SIGKILLed node is fenced (its partitions get new leaders) once its broker
            # session expires: 4 s instead of 9 s keeps each fault short.
            "broker.session.timeout.ms=4000",
            "broker.heartbeat.interval.ms=1000",
        ]
        props = home / "server.properties"
        props.write_text(
            _render_broker_template(client, controller, home / "data")
            + "\n# Three-node cluster overrides (tests/reliability/infra.py)\n"
            + "\n".join(overrides)
            + "\n"
        )
        return props

    def start(self, timeout_s: float = 180) -> None:
        """Format every node's storage with one cluster id (the three formats run at once:
        each is a JVM start), start all three, wait for them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        cluster_id = _new_cluster_id()
        formats = []
        for node in self.nodes:
            logs = self._dir(node) / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            props = self._properties(node)
            storage_format = ["kafka.tools.StorageTool", "format", "--config", str(props)]
            formats.append(
                subprocess.Popen(
                    [*_java(logs), *storage_format, "--cluster-id", cluster_id],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        for node, fmt in zip(self.nodes, formats, strict=True):
            try:
                out, _ = fmt.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                fmt.kill()
                out, _ = fmt.communicate(timeout=30)
            if fmt.returncode != 0:
                raise RuntimeError(f"kafka storage format of node {node} failed: {out.decode()}")
        for node in self.nodes:
            self._launch(node)
        self.wait(timeout_s)

    def _launch(self, node: int) -> None:
        logs = self._dir(node) / "logs"
        server_log = logs / "server.log"
        if server_log.exists():  # a fresh log per start: readiness reads this run's lines only
            server_log.replace(logs / "server.log.previous")
        java, *options = _java(logs)
        props = str(self._dir(node) / "server.properties")
        out = (logs / "stdout.log").open("ab")
        try:
            self.procs[node] = subprocess.Popen(
                [java, "-Xms128m", self.heap, "-XX:+UseG1GC", *options, "kafka.Kafka", props],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()

    def alive(self, node: int) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def _started(self, node: int) -> bool:
        """This run of the node logged "Kafka Server started" (it is then unfenced)."""
        if not self.alive(node):
            raise RuntimeError(f"Kafka node {node} exited: {self.log_tail(node)}")
        log = self._dir(node) / "logs" / "server.log"
        with contextlib.suppress(OSError):
            return "Kafka Server started" in log.read_text(errors="replace")
        return False

    def wait(self, timeout_s: float = 180) -> None:
        """Until every running node started and the metadata lists all of them as brokers."""
        deadline = time.monotonic() + timeout_s
        running = [n for n in self.nodes if n in self.procs]
        while time.monotonic() < deadline:
            if all(self._started(n) for n in running):
                brokers = _run(self._broker_ids(), timeout_s=15, default=set())
                if brokers >= set(running):
                    return
            time.sleep(0.3)
        raise RuntimeError(
            f"Kafka nodes {running} not all ready after {timeout_s:.0f} s: "
            + " | ".join(self.log_tail(n, 5) for n in running)
        )

    async def _admin(self) -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        return admin

    async def _broker_ids(self) -> set[int]:
        admin = await self._admin()
        try:
            cluster = await admin.describe_cluster()
            return {int(b["node_id"]) for b in cluster["brokers"]}
        finally:
            await admin.close()

    async def describe(self, topics: list[str] | None) -> dict[str, dict[int, PartitionState]]:
        """Leader, replicas and in-sync replicas of every partition of `topics` (None: of
        every topic, the internal ones included)."""
        admin = await self._admin()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        out: dict[str, dict[int, PartitionState]] = {}
        for info in described:
            if info["error_code"]:
                raise for_code(info["error_code"])(f"describe {info['topic']}")
            out[info["topic"]] = {
                int(p["partition"]): PartitionState(
                    int(p["leader"]), tuple(p["replicas"]), tuple(p["isr"])
                )
                for p in info["partitions"]
            }
        return out

    async def partitions(self, topic: str) -> dict[int, PartitionState]:
        """Leader, replicas and in-sync replicas of every partition of `topic`."""
        return (await self.describe([topic]))[topic]

    async def leader_of(self, topic: str, partition: int) -> int:
        """Node id leading `topic`/`partition` per the metadata (-1 while none is)."""
        return (await self.partitions(topic))[partition].leader

    async def wait_leader(
        self, topic: str, partition: int, *, not_on: int | None = None, timeout_s: float = 60
    ) -> int:
        """Until `topic`/`partition` has a leader (other than `not_on`); returns its id."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaError, OSError):
                leader = await self.leader_of(topic, partition)
                if leader >= 0 and leader != not_on:
                    return leader
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{topic}/{partition}: no new leader after {timeout_s:.0f} s")

    async def wait_in_sync(self, timeout_s: float = 120) -> None:
        """Until every partition of every topic has all its replicas in sync (a restarted
        node caught up): only then can another node go down without losing the acks=all
        quorum of `min.insync.replicas` 2."""
        deadline = time.monotonic() + timeout_s
        lagging: list[str] = []
        while time.monotonic() < deadline:
            lagging = []
            try:
                for topic, parts in (await self.describe(None)).items():
                    lagging += [
                        f"{topic}/{p} isr {state.isr}"
                        for p, state in parts.items()
                        if set(state.isr) != set(state.replicas)
                    ]
            except (KafkaError, OSError) as exc:
                lagging.append(str(exc))
            if not lagging:
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"replicas not in sync after {timeout_s:.0f} s: {lagging[:5]}")

    async def elect_preferred(self, topic: str, partitions: list[int]) -> None:
        """Preferred-replica election: each partition moves back to its first replica, with
        no node going down (what `kafka-leader-election --election-type preferred` does)."""
        admin = await self._admin()
        try:
            node = next(iter(b.nodeId for b in admin._client.cluster.brokers()))
            response = await admin._client.send(node, _ElectPreferredLeaders(topic, partitions))
        finally:
            await admin.close()
        if response.error_code:
            raise for_code(response.error_code)(f"elect leaders of {topic}")
        for _topic, results in response.results:
            for partition, code, message in results:
                # ELECTION_NOT_NEEDED (84): the preferred replica leads already.
                if code not in (0, 84):
                    raise for_code(code)(f"elect leader of {topic}/{partition}: {message}")

    def kill(self, node: int) -> None:
        """SIGKILL one node (no controlled shutdown: its leaderships are taken away by the
        controller once its broker session expires) and wait until the process is gone."""
        proc = self.procs.get(node)
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=30)

    def start_node(self, node: int, timeout_s: float = 180) -> None:
        """Start a stopped node again on its data folder and wait until it is a broker again."""
        if self.alive(node):
            return
        self._launch(node)
        self.wait(timeout_s)

    def log_tail(self, node: int, lines: int = 30) -> str:
        text = ""
        for name in ("server.log", "stdout.log"):
            with contextlib.suppress(OSError):
                text += (self._dir(node) / "logs" / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 60) -> None:
        """End every node: SIGTERM all (controlled shutdown), SIGKILL what is left."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)

    def close(self) -> None:
        """Every node ended and the folder removed (its data are only this run's).

        With the quorum gone, a node's controlled shutdown waits for a controller that
        never answers: after the first 20 s the rest are killed (nothing here is kept)."""
        self.stop(timeout_s=20)
        shutil.rmtree(self.folder, ignore_errors=True)


def _run(coro: Any, *, timeout_s: float, default: Any) -> Any:
    """Run an admin coroutine from synchronous code, bounded; `default` when Kafka fails."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    try:
        return asyncio.run(bounded())
    except (KafkaError, OSError, TimeoutError):
        return default


def kafka_jars() -> Path:
    """The jar folder `stack.sh fetch` fills: .cache/kafka-jars/<first 16 hex of sha256(pom)>."""
    digest = hashlib.sha256((REPO / "deploy" / "local" / "kafka" / "pom.xml").read_bytes())
    jars = REPO / ".cache" / "kafka-jars" / digest.hexdigest()[:16]
    if not (jars / ".complete").exists():
        subprocess.run([str(STACK_SH), "fetch"], check=True, capture_output=True, timeout=600)
    return jars


@dataclass
class SaslKafka:
    """A private broker whose client listener speaks SASL_PLAINTEXT with PLAIN and SCRAM.

    stack.sh has no switch for listeners, so this one is started here, from the same jars,
    broker template and log4j configuration: the template is rendered and then overridden
    (later keys win in a properties file). SCRAM users are written at format time.
    """

    folder: Path
    users: dict[str, str]
    """User name -> password, for both PLAIN and SCRAM-SHA-256/512."""
    ports: list[int] = field(default_factory=lambda: free_ports(3))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    def start(self, timeout_s: float = 180) -> None:
        client, internal, controller = self.ports
        jars = kafka_jars()
        data, logs = self.folder / "data", self.folder / "logs"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        template = (REPO / "deploy" / "local" / "kafka" / "server.properties").read_text()
        rendered = (
            template.replace("@KAFKA_PORT@", str(client))
            .replace("@KAFKA_CONTROLLER_PORT@", str(controller))
            .replace("@KAFKA_DATA_DIR@", str(data))
        )
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
        overrides = [
            (
                f"listeners=SASL_PLAINTEXT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal},"
                f"CONTROLLER://127.0.0.1:{controller}"
            ),
            (
                f"advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{client},"
                f"INTERNAL://127.0.0.1:{internal}"
            ),
            "inter.broker.listener.name=INTERNAL",
            (
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,"
                "SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            (
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            ),
            (
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            (
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        ]
        props = self.folder / "server.properties"
        props.write_text(rendered + "\n# SASL overrides\n" + "\n".join(overrides) + "\n")
        java = ["java", f"-Dlog4j2.configurationFile={REPO}/deploy/local/kafka/log4j2.properties"]
        java += [f"-Dkafka.logs.dir={logs}", "-cp", f"{jars}/*"]
        scram = []
        for user, password in self.users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                scram += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "--config",
                str(props),
                "--cluster-id",
                cluster_id.replace("-", "A"),
                *scram,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        out = (logs / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [java[0], "-Xms128m", "-Xmx512m", *java[1:], "kafka.Kafka", str(props)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout_s
        server_log = logs / "server.log"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"SASL broker exited: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if "Kafka Server started" in server_log.read_text(errors="replace"):
                    return
            time.sleep(0.3)
        raise RuntimeError(f"SASL broker not ready after {timeout_s} s: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("server.log", "stdout.log"):
            with contextlib.suppress(OSError):
                text += (self.folder / "logs" / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
