"""Where the test stack is: the one place that finds (and, when needed, starts) it.

`deploy/test` starts the test stack (deploy/local/stack.sh --profile test) and exports
METERING_TEST_KAFKA_BOOTSTRAP (host:port) and METERING_TEST_REDIS_URL (redis://host:port).
Without them, `find_stack()` starts it with `deploy/local/stack.sh --profile test up` and
leaves it running for the next run and for other sessions using it at the same time. Used by
the `stack` fixture (tests/conftest.py) and by scripts outside pytest
(tests/reliability/run_faults.py).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STACK = [str(REPO / "deploy" / "local" / "stack.sh"), "--profile", "test"]


@dataclass(frozen=True, slots=True)
class Stack:
    """Addresses of the test stack."""

    kafka_bootstrap: str
    """``host:port`` of the Kafka broker."""
    redis_url: str
    """``redis://host:port`` (no database: see the `redis_db` fixture)."""


class StackUnavailable(RuntimeError):
    """The test stack could not be started (the message carries stack.sh's output)."""


def stack_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STACK, *args], capture_output=True, text=True, check=False)


def find_stack(*services: str) -> tuple[Stack, list[str]]:
    """The stack's addresses, and which of `services` (default: all) this call started.

    The environment wins when it names both addresses; otherwise the stack is brought up
    (`up [services]`, a no-op for services already running) and asked for its addresses.
    """
    bootstrap = os.environ.get("METERING_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("METERING_TEST_REDIS_URL")
    if bootstrap and redis_url:
        return Stack(bootstrap, redis_url), []
    wanted = list(services) or ["kafka", "redis"]
    started = [s for s in wanted if stack_cmd("status", s).returncode != 0]
    up = stack_cmd("up", *services)
    if up.returncode != 0:
        raise StackUnavailable(f"could not start the test stack:\n{up.stdout}{up.stderr}")
    env = dict(
        line.removeprefix("export ").split("=", 1) for line in stack_cmd("env").stdout.splitlines()
    )
    return Stack(env["METERING_TEST_KAFKA_BOOTSTRAP"], env["METERING_TEST_REDIS_URL"]), started
