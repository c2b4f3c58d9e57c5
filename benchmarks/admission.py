"""Admission-check latency of the HTTP API at a fixed, open-loop 1,000 requests per second.

    python -m benchmarks.admission [--rate 1000] [--seconds 10] [--redis-url URL]
                                   [--action messages|sms]

The API runs under uvicorn in its own process on 127.0.0.1 (a free port), over Redis (the test
stack's by default, database 0, only keys of the account `bench` and its own API key, all
removed at the end). The admission path touches no Kafka, so the server is built without it.
The API answers only from a store that holds the processor's store marker (docs/api.md), so the
benchmark writes one when the database has none, and removes it at the end.

The client is open-loop: request i is due at start + i / rate whatever happened to earlier
ones, and its latency is measured from when it was *due* to when its response was read, so a
slow response delays the requests behind it and that delay is counted (no coordinated
omission). It speaks HTTP/1.1 keep-alive over a pool of raw asyncio connections, to keep the
client's own cost small next to the server's. `--action messages` (the default): each request
asks to message one new contact (reserved atomically in Redis by admit_members.lua) and one
already active. `--action sms`: each request asks to send one SMS on a prepaid balance (APSIS
plan), which places a hold (lua/holds.lua, docs/api.md "Holds"): holds on.

The client shares the machine with the server, so its own stalls count as latency: it runs on
uvloop (about a quarter less CPU per request than asyncio's loop, CPU the server can use) and
keeps its cyclic garbage collector off while it sends (a full collection over its ten thousand
pending tasks took 16 to 25 ms, counted against every request due meanwhile);
`METERING_BENCH_CLIENT=plain` restores asyncio's loop and the collector. The server runs as `metering api` does: httptools, uvloop,
no access log, the start-up heap frozen (`METERING_BENCH_GC=untuned` leaves it). The last line
gives the CPU each process spent per measured request (Linux /proc) and the load average.

Target: p99 < 5 ms. Not a test: it prints figures; nothing fails on them. Loopback only,
bounded in time (warm-up + `--seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from metering.state.keys import STORE_MARKER

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "bench"
PLANS = {"messages": "acton-active-contacts", "sms": "apsis-essential"}
PATHS = {"messages": "messages", "sms": "sms"}


# -- the server process -------------------------------------------------------------------------


def serve(redis_url: str, port: int, token_file: Path, action: str) -> None:
    """Run the API (no Kafka) on 127.0.0.1:`port`; write an account key's token to a file."""
    import uvicorn  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415

    from metering.api.app import create_app  # noqa: PLC0415
    from metering.api.auth import KeyRing, Scope  # noqa: PLC0415
    from metering.api.context import ApiConfig, ApiContext  # noqa: PLC0415
    from metering.core.account_codec import account_from_json  # noqa: PLC0415
    from metering.core.accounts import Account  # noqa: PLC0415
    from metering.core.directory import Directory  # noqa: PLC0415
    from metering.core.plan_loading import example_plans  # noqa: PLC0415
    from metering.runtime.api import tune_gc  # noqa: PLC0415
    from metering.state.redis_store import RedisStateStore  # noqa: PLC0415

    class Nowhere:
        """Admission publishes nothing; admin calls are not part of this benchmark."""

        async def put_account(self, account: Account) -> None:
            raise RuntimeError("not in the benchmark")

        async def delete_account(self, account_id: str) -> None:
            raise RuntimeError("not in the benchmark")

        async def publish(self, account: str, value: bytes) -> None:
            raise RuntimeError("not in the benchmark")

    config = ApiConfig(rate_per_s=1_000_000, burst=1_000_000)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = RedisStateStore.for_api(redis_url)
        directory = Directory()
        for plan in example_plans().values():
            directory.put_plan(plan)
        limits = {"active_contacts": 1_000_000_000} if action == "messages" else {}
        directory.put_account(
            account_from_json({"id": ACCOUNT, "plan": PLANS[action], "limits": limits})
        )
        if action == "sms":  # credits enough for every request: each one is admitted and held
            await store._client.set(f"mtr:{{{ACCOUNT}}}:b:sms_credits", 10**12)
        keys = KeyRing(store, cache_s=30.0)
        token, record = await keys.create(Scope.ACCOUNT, ACCOUNT)
        token_file.write_text(f"{token}\n{record.id}\n")  # noqa: ASYNC240 - once, at start
        nowhere = Nowhere()
        app.state.ctx = ApiContext(store, directory, nowhere, nowhere, keys, config)
        if os.environ.get("METERING_BENCH_GC", "tuned") == "tuned":
            tune_gc()  # as `metering api` does once it is ready
        try:
            yield
        finally:
            await keys.revoke(key_id=record.id)
            await store.close()

    uvicorn.run(
        create_app(config=config, lifespan=lifespan),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        server_header=False,
        http=os.environ.get("METERING_BENCH_HTTP", "httptools"),  # as `metering api`
        loop=os.environ.get("METERING_BENCH_LOOP", "uvloop"),
    )


# -- the client ---------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


def request_bytes(port: int, token: str, n: int, action: str = "messages") -> bytes:
    if action == "sms":
        body = orjson.dumps({"messages": 1})
    else:
        body = orjson.dumps({"contacts": [f"new-{n}", "regular-0"]})
    return (
        f"POST /v1/accounts/{ACCOUNT}/admission/{PATHS[action]} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def run_load(
    port: int,
    token: str,
    rate: int,
    seconds: float,
    connections: int,
    first: int,
    action: str = "messages",
) -> tuple[list[float], int, float]:
    """Open-loop load; returns latencies (s), errors and the elapsed time."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        pool.put_nowait(Connection(reader, writer))
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    clock = time.perf_counter
    start = clock() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        connection = await pool.get()
        try:
            status = await connection.request(request_bytes(port, token, first + i, action))
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            return
        pool.put_nowait(connection)
        latencies.append(clock() - due)
        if status != 200:
            errors += 1

    tasks = []
    for i in range(total):  # spawn each request just before it is due (a small, steady loop)
        delay = start + i / rate - clock() - 0.002
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = clock() - start
    while not pool.empty():
        pool.get_nowait().writer.close()
    return latencies, errors, elapsed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="requests per second (1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("METERING_BENCH_REDIS_URL", "redis://127.0.0.1:26379/0"),
    )
    parser.add_argument(
        "--action",
        choices=sorted(PLANS),
        default="messages",
        help="messages: a new contact reserved + one active (Act-On); sms: one SMS held on a "
        "prepaid balance (APSIS)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.redis_url, args.serve, args.token_file, args.action)
        return 0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = Path(f"/tmp/metering-bench-token-{os.getpid()}")
    marker = _mark(args.redis_url)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.admission",
            "--serve",
            str(port),
            "--token-file",
            str(token_file),
            "--redis-url",
            args.redis_url,
            "--action",
            args.action,
        ],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while not (token_file.exists() and token_file.read_text().count("\n") == 2):
            if time.monotonic() > deadline or server.poll() is not None:
                print("the API server did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        time.sleep(0.3)
        token = token_file.read_text().split("\n")[0]

        plain = os.environ.get("METERING_BENCH_CLIENT") == "plain"
        cpu: dict[str, float] = {}

        async def both() -> tuple[list[float], int, float]:
            await run_load(port, token, args.rate, args.warmup, args.connections, 0, args.action)
            first = int(args.rate * args.warmup)
            if not plain:
                gc.collect()
                gc.disable()
            cpu["server"], cpu["client"] = _cpu_s(server.pid), time.process_time()
            try:
                return await run_load(
                    port, token, args.rate, args.seconds, args.connections, first, args.action
                )
            finally:
                cpu["server"] = _cpu_s(server.pid) - cpu["server"]
                cpu["client"] = time.process_time() - cpu["client"]
                gc.enable()

        if plain:
            latencies, errors, elapsed = asyncio.run(both())
        else:
            import uvloop  # noqa: PLC0415

            latencies, errors, elapsed = uvloop.run(both())
    finally:
        server.terminate()
        server.wait(timeout=30)
        token_file.unlink(missing_ok=True)
        _clean(args.redis_url, marker)

    ms = [x * 1000 for x in latencies]
    print(
        f"admission checks ({args.action}): {len(ms)} at {args.rate}/s open-loop over "
        f"{elapsed:.1f} s "
        f"({len(ms) / elapsed:.0f}/s achieved), {errors} errors, "
        f"{args.connections} keep-alive connections, uvicorn + Starlette, 1 worker"
    )
    print(
        f"latency ms: p50 {percentile(ms, 50):.2f}  p90 {percentile(ms, 90):.2f}  "
        f"p99 {percentile(ms, 99):.2f}  p99.9 {percentile(ms, 99.9):.2f}  "
        f"max {max(ms):.2f}  mean {statistics.fmean(ms):.2f}"
    )
    print(f"target p99 < 5 ms: {'met' if percentile(ms, 99) < 5 else 'NOT met'}")
    per = 1e6 / max(1, len(ms))
    print(
        f"cpu per request: server {cpu['server'] * per:.0f} us, client {cpu['client'] * per:.0f}"
        f" us ({'asyncio, collector on' if plain else 'uvloop, collector off'}); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mark(redis_url: str) -> str | None:
    """Write a store marker unless there is one; returns ours (None: one was there)."""
    import redis  # noqa: PLC0415

    ours = f"benchmark-{os.getpid()}"
    client = redis.Redis.from_url(redis_url)
    try:
        return ours if client.set(STORE_MARKER, ours, nx=True) else None
    finally:
        client.close()


def _clean(redis_url: str, marker: str | None) -> None:
    """Remove the benchmark account's keys (its admission sets) from Redis, and our marker."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(redis_url)
    try:
        names = list(client.scan_iter(match=f"mtr:{{{ACCOUNT}}}:*", count=1000))
        if names:
            client.delete(*names)
        if marker is not None and client.get(STORE_MARKER) == marker.encode():
            client.delete(STORE_MARKER)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
