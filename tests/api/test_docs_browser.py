"""/docs in a real headless Chromium against a real uvicorn server: Redoc, served by the API
itself under its Content-Security-Policy, renders the OpenAPI document (tags, operations,
descriptions), and the page loads nothing from another origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api.cdp import Browser, chromium_path
from tests.api.server import ServerThread

pytestmark = pytest.mark.integration


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerThread]:
    running = ServerThread(redis_url).start()
    yield running
    running.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = await Browser(chromium_path()).start()
    yield b
    await b.close()


async def test_the_docs_page_renders_the_document_from_this_origin_only(
    server: ServerThread, browser: Browser
) -> None:
    await browser.send("Page.navigate", url=f"{server.url}/docs")
    await browser.wait_for(
        "!!document.body && document.body.innerText.includes('Send usage events')", timeout_s=60
    )
    text = await browser.evaluate("document.body.innerText")
    for expected in ("Metering API", "ingestion", "admission", "Admit messages", "Idempotency-Key"):
        assert expected in text, expected
    origins = await browser.evaluate(
        "[...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin))]"
    )
    assert set(origins) <= {server.url}, origins
