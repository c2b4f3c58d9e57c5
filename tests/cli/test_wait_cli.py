"""`metering wait` and the as-of line of `metering usage`, against the real API process's
application (Kafka and Redis of the test stack) served over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn

from metering.api.auth import KeyRing, Scope
from metering.api.context import ApiConfig
from metering.cli.main import WAIT_TIMED_OUT, main
from metering.runtime.api import build_app, server_options
from metering.settings import Settings
from metering.state.redis_store import RedisStateStore
from tests.api.server import free_port
from tests.api.test_end_to_end import processor
from tests.integration.harness import (
    TopicFactory,
    encoded,
    event,
    make_settings,
    produce,
    publish_config,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def settings(kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory) -> Settings:
    s = await make_settings(kafka_bootstrap, redis_url, topic_factory, partitions=2)
    await publish_config(s, [{"id": "acme", "plan": "it-plan"}])
    return s


@pytest.fixture
async def keys(settings: Settings) -> AsyncIterator[dict[str, str]]:
    store = RedisStateStore.from_url(settings.redis_url)
    ring = KeyRing(store)
    admin, _ = await ring.create(Scope.ADMIN)
    account, _ = await ring.create(Scope.ACCOUNT, "acme")
    await store.claim_store_marker("cli wait test")
    yield {"admin": admin, "acme": account}
    await store.close()


@pytest.fixture
def api_url(settings: Settings) -> Iterator[str]:
    port = free_port()
    app = build_app(settings, ApiConfig(rate_per_s=1000, burst=1000))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **server_options())
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the API stopped while starting"
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


async def test_wait_exits_3_with_the_lag_then_0_once_counted(
    settings: Settings, keys: dict[str, str], api_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [event("acme", "email.sent", contact=f"c{i}", kind="marketing") for i in range(4)]
    await produce(settings, encoded(docs))
    target = ["--api-url", api_url, "--color", "never"]

    def cli(*words: str) -> int:
        return main(list(words))

    code = await asyncio.to_thread(
        cli, "wait", "--account", "acme", "--timeout", "0.3", "--key", keys["acme"], *target
    )
    assert code == WAIT_TIMED_OUT
    out = capsys.readouterr().out
    assert "not caught up (account acme): 4 records not applied yet" in out
    assert await asyncio.to_thread(cli, "usage", "acme", "--key", keys["acme"], *target) == 0
    assert "as of: nothing counted yet; 4 records not counted yet" in capsys.readouterr().out
    async with processor(settings):
        code = await asyncio.to_thread(
            cli, "wait", "--timeout", "60", "--key", keys["admin"], *target
        )
        assert code == 0
        assert "caught up (every partition)" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "usage", "acme", "--key", keys["acme"], *target) == 0
        out = capsys.readouterr().out
        assert "; caught up" in out
        assert "emails" in out
        assert " 4 " in out
    assert main(["wait", "--timeout", "301", "--key", "k", *target]) == 2
    assert "--timeout must be between 0 and 300" in capsys.readouterr().err


def test_wait_is_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["wait", "--help"])
    assert "3 the timeout passed first" in capsys.readouterr().out
