"""A minimal Chrome DevTools Protocol client: enough to load a page in headless Chromium,
evaluate JavaScript and take a screenshot (no Playwright: it would want its own browser
build; this drives Debian's /usr/bin/chromium over one WebSocket)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "local" / "install-chromium.sh"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def chromium_path() -> str:
    """Install Chromium when missing (idempotent; quick once installed) and return its path."""
    done = subprocess.run(
        ["bash", str(INSTALL)], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"install-chromium.sh failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def _targets(port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
        targets: list[dict[str, Any]] = json.load(r)
        return targets


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Browser:
    """One headless Chromium with one page, driven over CDP."""

    def __init__(self, executable: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="chromium-")
        self._proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._dir.name}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its helper processes share the group: close() ends all
        )
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None

    def _port(self, timeout_s: float = 30) -> int:
        assert self._proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                return int(found.group(1))
            if not line and self._proc.poll() is not None:
                break
        raise RuntimeError("Chromium did not open its DevTools port")

    async def start(self) -> Browser:
        port = await asyncio.to_thread(self._port)
        targets = await asyncio.to_thread(_targets, port)
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        message_id = next(self._ids)
        await self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20) -> Any:
        """Poll `expression` until it is truthy. While a page loads, an expression may throw
        (no `document.body` yet): that counts as "not yet", and the last error is reported
        if the time runs out."""
        deadline = time.monotonic() + timeout_s
        failure: RuntimeError | None = None
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError as exc:
                failure = exc
            else:
                if value:
                    return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression} (last error: {failure})")

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        self._proc.terminate()
        try:
            await asyncio.to_thread(self._proc.wait, 10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        # Chromium's helpers (renderer, crash handler) may outlive the browser process by a
        # moment and still write into the profile: end the whole group, then remove it,
        # retrying while a straggler finishes (seen once as "Directory not empty: 'Default'").
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        for _ in range(20):
            try:
                self._dir.cleanup()
                return
            except OSError:
                await asyncio.sleep(0.1)
        self._dir.cleanup()
