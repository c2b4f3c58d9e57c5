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
"""

from __future__ import annotations

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
