"""A real Prometheus server for tests: Debian's `prometheus`, on loopback, in a temp folder.

The binaries come from deploy/local/install-prometheus.sh (apt, once). The server is built from
the shipped deploy/prometheus/prometheus.yml with only what a test must change replaced: the
processor target (a free port), the intervals (1 s, so a test waits seconds, not minutes) and
the rule files (absolute paths to the shipped rules). So the scrape job, the rules and the
dashboard queries a test checks are the ones we ship.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]  # no stubs in the venv

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "local" / "install-prometheus.sh"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "metering.json"
PROCESSOR_JOB = "metering-processor"


@dataclass(frozen=True, slots=True)
class PrometheusTools:
    """Paths of the installed `prometheus` and `promtool`."""

    prometheus: str
    promtool: str


def install_prometheus() -> PrometheusTools:
    """Run the project's idempotent install script (instant once installed); fail, never skip,
    when it cannot install: a missing tool would otherwise hide broken rules."""
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{INSTALL} failed:\n{done.stdout}{done.stderr}")
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        raise RuntimeError(f"{INSTALL} ran, but prometheus/promtool are not on PATH")
    return PrometheusTools(prometheus, promtool)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config_for_test(processor_target: str, *, interval: str = "1s") -> dict[str, Any]:
    """The shipped configuration, scraping only `processor_target`, every `interval`."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"].update(
        scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval
    )
    config["rule_files"] = [str(path) for path in RULES]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == PROCESSOR_JOB]
    jobs[0]["static_configs"] = [{"targets": [processor_target]}]
    config["scrape_configs"] = jobs
    return config


@dataclass
class PrometheusServer:
    """One `prometheus` process on 127.0.0.1:<free port> with its storage in a temp folder."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(cls, binary: str, config: dict[str, Any], folder: Path) -> PrometheusServer:
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        log = folder / "prometheus.log"
        with log.open("ab") as handle:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
        return cls(proc, f"http://127.0.0.1:{port}", log)

    async def ready(self, timeout_s: float = 30) -> None:
        """Wait for /-/ready (storage open, configuration and rules loaded)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"prometheus exited: {self.log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/-/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        tail = self.log.read_text()[-3000:]
        raise AssertionError(f"prometheus not ready in {timeout_s}s: {tail}")

    async def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data` after checking `status` is success."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            response = await client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the vector's samples (`metric` labels, `value` [time, "text"])."""
        data = await self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def value(self, expr: str) -> float | None:
        """The value of a query that yields at most one sample (None: no sample)."""
        result = await self.query(expr)
        assert len(result) <= 1, f"{expr}: {result}"
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s: nothing the test started is left behind."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
