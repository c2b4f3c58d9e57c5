"""The demo's own processor and API processes, left running after the demo and stopped later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from metering.settings import Settings

PID_FILE = "pids"


def env_of(settings: Settings) -> dict[str, str]:
    """The environment that gives a `metering` subprocess these settings."""
    return {**os.environ, **settings.to_env()}


@dataclass
class Services:
    """Processes started for one demo run; their pids are kept in `<state>/pids`."""

    state: Path
    settings: Settings

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.state / f"{name}.log").open("ab")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "metering.cli", *args],
            env=env_of(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the demo; `deploy/demo stop` ends it
        )
        log.close()
        with (self.state / PID_FILE).open("a") as pids:
            pids.write(f"{proc.pid} {name}\n")
        return proc

    def wait_for_log(self, name: str, text: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        log = self.state / f"{name}.log"
        while time.monotonic() < deadline:
            if log.exists() and text in log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise RuntimeError(f"{name} did not start in {timeout_s}s:\n{tail}")

    def wait_for_http(self, url: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{url} did not answer in {timeout_s}s")


def stop_all(root: Path, timeout_s: float = 30) -> list[str]:
    """Stop every process a demo left running: SIGTERM, a wait for the clean exit (the
    processor finishes its batch and leaves its group), SIGKILL after `timeout_s`."""
    stopped: list[str] = []
    pids: list[int] = []
    for pid_file in sorted(root.glob(f"*/{PID_FILE}")):
        for line in pid_file.read_text().splitlines():
            pid_text, name = line.split(" ", 1)
            try:
                os.kill(int(pid_text), signal.SIGTERM)
            except ProcessLookupError:
                continue
            pids.append(int(pid_text))
            stopped.append(f"{name} (pid {pid_text})")
        pid_file.unlink()
    deadline = time.monotonic() + timeout_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if _alive(pid)]
        time.sleep(0.2)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours would count as alive; the demo's children are reparented.
    return not Path(f"/proc/{pid}/stat").read_text().split(")")[-1].strip().startswith("Z")
