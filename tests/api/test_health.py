"""`/healthz` is liveness: 200 while the process can recover by itself (whatever Redis and
Kafka do), 503 `stopped` once background work it needs has ended."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.conftest import Api


@pytest.mark.integration
async def test_liveness_fails_only_when_needed_background_work_has_ended(api: Api) -> None:
    release = asyncio.Event()

    async def follower() -> None:
        await release.wait()

    task = asyncio.create_task(follower(), name="api-config-follower")
    api.ctx.tasks.append(task)
    alive = await api.client.get("/healthz")
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}

    release.set()
    await task
    stopped = await api.client.get("/healthz")
    assert stopped.status_code == 503
    assert stopped.headers["content-type"] == "application/problem+json"
    doc = stopped.json()
    assert doc["code"] == "stopped"
    assert "api-config-follower" in doc["detail"]
