"""A real uvicorn server on 127.0.0.1 in a thread with its own event loop (for clients that
are not asyncio: schemathesis, Chromium, the benchmark's subprocess-free mode)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette

from metering.api.app import create_app
from metering.api.context import ApiConfig
from metering.runtime.api import server_options
from metering.state.redis_store import RedisStateStore
from tests.api.conftest import NOW, build_api


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerThread:
    """The API over Redis database `redis_url`, serving until `stop()`."""

    redis_url: str
    config: ApiConfig = field(default_factory=lambda: ApiConfig(rate_per_s=10_000, burst=10_000))
    now_ms: int = NOW
    port: int = field(default_factory=free_port)
    admin: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            store = RedisStateStore.for_api(self.redis_url)
            ctx, _, self.admin, self.tokens = await build_api(store, self.config, self.now_ms)
            app.state.ctx = ctx
            self.ctx = ctx
            try:
                yield
            finally:
                await store.close()

        return create_app(config=self.config, lifespan=lifespan)

    def start(self) -> ServerThread:
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            **server_options(),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()),  # type: ignore[union-attr]
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
